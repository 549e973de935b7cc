//! The hot path: one process's stdout to the next process's stdin.
//!
//! A reader task scans each line's envelope only (`type`, `stream`), keeps counts, applies the
//! native transforms to the streams they touch, and batches raw lines into chunks; a writer task
//! writes the chunks to the next process. A bounded channel joins the two, so a slow consumer
//! stops the reader, and the OS pipe then pauses the producer.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use super::Event;
use crate::error::Error;
use crate::singer::codec::{LineError, LineReader, excerpt};
use crate::singer::envelope::{MessageKind, sanitize, scan};
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

/// What a reader learned by the end of its input.
#[derive(Debug, Default)]
pub(super) struct SegmentReport {
    pub lines: u64,
    pub bad_lines: u64,
    pub streams: BTreeMap<String, StreamCounts>,
    pub error: Option<Error>,
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
    pub tx: mpsc::Sender<Vec<u8>>,
    pub events: mpsc::Sender<Event>,
}

impl Reader {
    pub async fn run(mut self) {
        let mut report = SegmentReport::default();
        if let Err(error) = self.pump(&mut report).await {
            report.error = Some(error);
        }
        let index = self.index;
        // Dropping the chunk sender (with `self`) closes the next process's stdin.
        let events = self.events.clone();
        drop(self);
        let _ = events.send(Event::SegmentDone(index, report)).await;
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

    async fn pump(&mut self, report: &mut SegmentReport) -> Result<(), Error> {
        let stdout = self.stdout.take().expect("the reader runs once");
        let mut reader = LineReader::new(BufReader::with_capacity(1 << 16, stdout), self.max_line);
        let mut line = Vec::with_capacity(1024);
        let mut chunk: Vec<u8> = Vec::with_capacity(self.chunk_bytes + 1024);
        let mut schemas: HashSet<String> = HashSet::new();
        let mut warned_types: HashSet<String> = HashSet::new();
        let mut produced: Vec<Message> = Vec::new();
        loop {
            match reader.read_line_async(&mut line).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(LineError::TooLong {
                    line_number,
                    limit,
                    excerpt: ex,
                }) => {
                    let what = format!("longer than the limit of {limit} bytes");
                    self.bad_line(report, line_number, &what, ex.as_bytes())?;
                    reader
                        .skip_rest_of_line_async()
                        .await
                        .map_err(|e| Error::failed(format!("reading {}: {e}", self.label)))?;
                    continue;
                }
                Err(LineError::Io(e)) => {
                    tracing::warn!(plugin = %self.label, error = %e, "could not read the plugin's output");
                    break;
                }
            }
            let n = reader.line_number();
            report.lines = n;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let env = match scan(&line) {
                Ok(env) => env,
                Err(e) => {
                    self.bad_line(report, n, &format!("not a Singer message ({e})"), &line)?;
                    continue;
                }
            };
            let clean;
            let bytes: &[u8] = if env.needs_sanitizing() {
                clean = sanitize(&line, &env.non_finite);
                &clean
            } else {
                &line
            };
            match &env.kind {
                MessageKind::Schema => {
                    if let Some(s) = &env.stream
                        && !schemas.contains(s)
                    {
                        schemas.insert(s.clone());
                    }
                }
                MessageKind::Record => {
                    if self.records_need_schema
                        && let Some(s) = &env.stream
                        && !schemas.contains(s)
                    {
                        self.bad_line(
                            report,
                            n,
                            &format!("RECORD of stream `{s}` before its SCHEMA"),
                            &line,
                        )?;
                        continue;
                    }
                }
                MessageKind::Unknown(t) if warned_types.insert(t.clone()) => {
                    tracing::warn!(plugin = %self.label, line = n, "passing on a message of unknown type `{t}`");
                }
                _ => {}
            }
            if self.index == 0
                && let Some(s) = &env.stream
            {
                let counts = match report.streams.get_mut(s.as_str()) {
                    Some(c) => c,
                    None => report.streams.entry(s.clone()).or_default(),
                };
                counts.bytes += bytes.len() as u64;
                if env.kind == MessageKind::Record {
                    counts.records += 1;
                }
            }
            let touched = !self.transforms.is_empty()
                && env.kind != MessageKind::State
                && env
                    .stream
                    .as_deref()
                    .is_some_and(|s| self.transforms.iter().any(|t| t.touches(s)));
            if touched {
                let message = match Message::parse(bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        self.bad_line(report, n, &format!("not a Singer message ({e})"), &line)?;
                        continue;
                    }
                };
                produced.clear();
                apply_chain(&mut self.transforms, message, &mut produced)
                    .map_err(|e| Error::from(e).detail(format!("at line {n} of {}", self.label)))?;
                for m in produced.drain(..) {
                    chunk.extend_from_slice(&m.to_line());
                    chunk.push(b'\n');
                }
            } else {
                chunk.extend_from_slice(bytes);
                chunk.push(b'\n');
            }
            // Send when the chunk is full, when no more input is waiting (so a slow tap's
            // records are not held back), and after every STATE (so it reaches the loader now).
            if chunk.len() >= self.chunk_bytes
                || reader.get_ref().buffer().is_empty()
                || env.kind == MessageKind::State
            {
                let full =
                    std::mem::replace(&mut chunk, Vec::with_capacity(self.chunk_bytes + 1024));
                if self.tx.send(full).await.is_err() {
                    // The writer stopped: the next process closed its input. The driver
                    // stops this producer; nothing more to do here.
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() {
            let _ = self.tx.send(chunk).await;
        }
        Ok(())
    }
}

/// Runs a message through each transform in order; STATE never reaches them.
fn apply_chain(
    transforms: &mut [Box<dyn Transform>],
    message: Message,
    out: &mut Vec<Message>,
) -> Result<(), crate::transform::TransformError> {
    let mut current = vec![message];
    for t in transforms.iter_mut() {
        let mut next = Vec::with_capacity(current.len());
        for m in current {
            let touched =
                m.kind() != MessageKind::State && m.stream().is_some_and(|s| t.touches(s));
            if touched {
                t.apply(m, &mut next)?;
            } else {
                next.push(m);
            }
        }
        current = next;
    }
    out.extend(current);
    Ok(())
}

/// Writes chunks to the next process's stdin; closes it when the reader is done.
pub(super) async fn write(
    index: usize,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut stdin: ChildStdin,
    events: mpsc::Sender<Event>,
) {
    while let Some(chunk) = rx.recv().await {
        if let Err(error) = stdin.write_all(&chunk).await {
            tracing::debug!(%error, "the next plugin stopped reading its input");
            let _ = events.send(Event::InputBroken(index)).await;
            return;
        }
    }
    let _ = stdin.flush().await;
    // Announce before closing: the consumer's exit (which follows its EOF) must be seen after.
    let _ = events.send(Event::InputClosed(index)).await;
    drop(stdin);
}

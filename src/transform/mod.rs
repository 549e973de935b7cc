//! Built-in transformations: stream maps, field masking and hashing, record validation.
//!
//! A transform is a plain function from one message to zero or more messages. The pipeline
//! parses only the messages of streams a transform [`Transform::touches`]; every other line
//! passes through as raw bytes. STATE messages never go through transforms: they keep their
//! place in the stream untouched.

pub mod expr;
pub mod field_mask;
pub mod stream_maps;
pub mod validate;

pub use field_mask::FieldMask;
pub use stream_maps::StreamMaps;
pub use validate::{Policy, Validate, ValidationSettings};

use crate::singer::Message;
use crate::singer::message::RecordMessage;

/// A transform the pipeline runs natively, in order, between extractor and loader.
pub trait Transform: Send {
    /// Whether SCHEMA, RECORD, ACTIVATE_VERSION or BATCH messages of `stream` may be changed,
    /// dropped, renamed or duplicated. Streams for which this is false are not parsed.
    fn touches(&self, stream: &str) -> bool;

    /// Applies the transform to one message, pushing zero or more messages to `out`.
    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError>;

    /// A faster [`Transform::apply`] for a RECORD of `stream` that arrives as its line (no
    /// newline; sanitized): appends to `out` what `apply` would output, each message written by
    /// [`Message::write_line`] and followed by a newline, byte for byte, and returns `true`. Or
    /// returns `false` having changed nothing, and the caller parses the line and calls `apply`.
    fn apply_record_line(
        &mut self,
        _stream: &str,
        _line: &[u8],
        _out: &mut Vec<u8>,
    ) -> Result<bool, TransformError> {
        Ok(false)
    }

    /// Whether RECORD lines of `stream` can usually be mapped from their bytes (see
    /// [`Transform::apply_record_lines`]); the pipeline then gathers runs of them.
    fn maps_record_lines(&self, _stream: &str) -> bool {
        false
    }

    /// [`Transform::apply_record_line`] for a run of consecutive RECORD lines of `stream`
    /// (`lines` are ranges of `buf`, without newlines; none needed sanitizing). Appends the
    /// outputs in order and says how many lines were mapped; the line after those either
    /// failed (`error`) or needs the full path, and nothing of it was written. A transform may
    /// map the lines on several threads.
    fn apply_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[std::ops::Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        LinesMapped::each(lines.len(), out, |i, out| {
            self.apply_record_line(stream, &buf[lines[i].clone()], out)
        })
    }

    /// Whether this transform only ever passes a RECORD of `stream` on unchanged or drops it
    /// (validation does). When every transform touching a stream says so, the pipeline calls
    /// [`Transform::keep`] instead of [`Transform::apply`] for its records and passes the
    /// line's own bytes on: no re-serialising.
    fn filters_only(&self, _stream: &str) -> bool {
        false
    }

    /// For a transform that [`Transform::filters_only`]: whether to pass this record on. Has
    /// the same effects as `apply` (counting, warnings, the dead-letter file, failing).
    fn keep(&mut self, record: &RecordMessage) -> Result<bool, TransformError> {
        Err(TransformError {
            message: format!(
                "internal error: a transform that changes records was asked only to filter a record of stream `{}`",
                record.stream
            ),
            hint: None,
        })
    }

    /// Called once when the input ends (flushes files such as the validation dead-letter file).
    fn finish(&mut self) -> Result<(), TransformError> {
        Ok(())
    }

    /// Sees the value of each STATE message as it passes, in its place among the other
    /// messages. STATE itself is never changed by transforms; stages that must know which of
    /// their output a STATE covers (the merge stage) count them here.
    fn on_state(&mut self, _state: &serde_json::Value) -> Result<(), TransformError> {
        Ok(())
    }

    /// What becomes of stream `stream` (for classification labels): each output stream and
    /// which input properties it is made from. The default passes the stream on as it is.
    fn lineage(&self, stream: &str) -> Vec<Lineage> {
        vec![Lineage::same(stream)]
    }
}

/// Which properties of an input stream one output stream is made from, so a classification
/// label follows a field through renames, hashing and removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The output stream's name.
    pub stream: String,
    /// Which input properties pass on under their own names.
    pub keeps: Keeps,
    /// Input properties whose values feed a computed property or decide which records pass
    /// (a filter); `None` when an expression reads the whole record.
    pub reads: Option<std::collections::BTreeSet<String>>,
}

/// Which input properties pass on unchanged in name (values may be masked or hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keeps {
    /// Every property.
    All,
    /// Every property but these (removed, or replaced by a value computed without them).
    AllBut(std::collections::BTreeSet<String>),
    /// None of them.
    Nothing,
}

impl Lineage {
    /// The stream passed on unchanged.
    pub fn same(stream: &str) -> Lineage {
        Lineage {
            stream: stream.to_owned(),
            keeps: Keeps::All,
            reads: Some(std::collections::BTreeSet::new()),
        }
    }
}

/// How far [`Transform::apply_record_lines`] got.
#[derive(Debug, Default)]
pub struct LinesMapped {
    /// The lines mapped, from the first.
    pub done: usize,
    /// Why the line after them could not be mapped; `None` with lines left means that line
    /// needs the full path ([`Transform::apply`]).
    pub error: Option<TransformError>,
}

impl LinesMapped {
    /// Maps lines `0..n` in order with `map` (which says `Ok(false)` for a line it leaves to
    /// the full path), stopping at the first that fails or is left, with `out` as it was
    /// before that line.
    pub fn each(
        n: usize,
        out: &mut Vec<u8>,
        mut map: impl FnMut(usize, &mut Vec<u8>) -> Result<bool, TransformError>,
    ) -> LinesMapped {
        for i in 0..n {
            let mark = out.len();
            let error = match map(i, out) {
                Ok(true) => continue,
                Ok(false) => None,
                Err(e) => Some(e),
            };
            out.truncate(mark);
            return LinesMapped { done: i, error };
        }
        LinesMapped {
            done: n,
            error: None,
        }
    }
}

/// A transform could not be applied; the run stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransformError {
    /// What failed, naming the stream, record number, property and expression where known.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

impl From<TransformError> for crate::error::Error {
    fn from(e: TransformError) -> Self {
        let mut err = crate::error::Error::failed(e.message);
        if let Some(h) = e.hint {
            err = err.hint(h);
        }
        err
    }
}

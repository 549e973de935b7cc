//! Record validation against each stream's JSON Schema, with a per-stream policy: fail, skip,
//! or quarantine the record. The checks themselves are [`crate::singer::schema`]'s.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Transform, TransformError};
use crate::singer::Message;
use crate::singer::message::RecordMessage;
use crate::singer::schema::CompiledSchema;

/// What happens to a record that does not match its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No validation (the stream is not parsed).
    Off,
    /// Log a warning and keep the record.
    Warn,
    /// Drop the record.
    Skip,
    /// Drop the record and write it, with the reason, to the dead-letter file.
    Quarantine,
    /// Stop the run.
    Fail,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "off" => Policy::Off,
            "warn" => Policy::Warn,
            "skip" => Policy::Skip,
            "quarantine" => Policy::Quarantine,
            "fail" => Policy::Fail,
            other => {
                return Err(format!(
                    "unknown validation policy `{other}` (expected off, warn, skip, quarantine or fail)"
                ));
            }
        })
    }
}

/// Per-stream validation settings.
#[derive(Debug, Clone)]
pub struct ValidationSettings {
    /// Policy for streams not listed in `streams`.
    pub default: Policy,
    /// Policy per stream name.
    pub streams: HashMap<String, Policy>,
    /// Where `quarantine` writes bad records (one JSON object per line), created on first use.
    pub quarantine_path: Option<PathBuf>,
}

#[derive(Debug)]
struct StreamState {
    schema: CompiledSchema,
    records: u64,
}

/// The validation transform.
#[derive(Debug)]
pub struct Validate {
    settings: ValidationSettings,
    streams: HashMap<String, StreamState>,
    quarantine: Option<BufWriter<File>>,
    quarantined: u64,
    warned: u64,
    skipped: u64,
}

impl Validate {
    /// Builds the transform. A `quarantine` policy without a path is an error.
    pub fn new(settings: ValidationSettings) -> Result<Validate, TransformError> {
        let quarantines = settings.default == Policy::Quarantine
            || settings.streams.values().any(|p| *p == Policy::Quarantine);
        if quarantines && settings.quarantine_path.is_none() {
            return Err(TransformError {
                message: "validation policy `quarantine` needs a dead-letter file path".into(),
                hint: None,
            });
        }
        Ok(Validate {
            settings,
            streams: HashMap::new(),
            quarantine: None,
            quarantined: 0,
            warned: 0,
            skipped: 0,
        })
    }

    fn policy(&self, stream: &str) -> Policy {
        self.settings
            .streams
            .get(stream)
            .copied()
            .unwrap_or(self.settings.default)
    }

    /// How many records the `skip` policy dropped.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// How many records went to the dead-letter file.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// The dead-letter file, if the policy uses one.
    pub fn quarantine_path(&self) -> Option<&Path> {
        self.settings.quarantine_path.as_deref()
    }

    fn io_error(&self, e: &std::io::Error) -> TransformError {
        TransformError {
            message: format!(
                "cannot write the dead-letter file `{}`: {e}",
                self.settings
                    .quarantine_path
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ),
            hint: None,
        }
    }

    fn write_quarantine(&mut self, line: &Value) -> Result<(), TransformError> {
        if self.quarantine.is_none() {
            let path = self
                .settings
                .quarantine_path
                .clone()
                .expect("checked in new()");
            // The records set aside are data: readable by the owner only, like plugin configs.
            let f = crate::files::append_private(&path).map_err(|e| self.io_error(&e))?;
            self.quarantine = Some(BufWriter::new(f));
        }
        let mut bytes = serde_json::to_vec(line).expect("a JSON value always serialises");
        bytes.push(b'\n');
        let result = self
            .quarantine
            .as_mut()
            .expect("opened above")
            .write_all(&bytes);
        result.map_err(|e| self.io_error(&e))
    }
}

impl Transform for Validate {
    fn finish(&mut self) -> Result<(), TransformError> {
        if let Some(w) = &mut self.quarantine {
            w.flush().map_err(|e| self.io_error(&e))?;
        }
        Ok(())
    }

    fn touches(&self, stream: &str) -> bool {
        self.policy(stream) != Policy::Off
    }

    fn filters_only(&self, _stream: &str) -> bool {
        true
    }

    fn keep(&mut self, r: &RecordMessage) -> Result<bool, TransformError> {
        let policy = self.policy(&r.stream);
        let Some(state) = self.streams.get_mut(&r.stream) else {
            return Err(TransformError {
                message: format!(
                    "a RECORD of stream `{}` arrived before its SCHEMA message",
                    r.stream
                ),
                hint: Some("Singer requires a SCHEMA message before a stream's records".into()),
            });
        };
        state.records += 1;
        let number = state.records;
        let Err(v) = state.schema.check(&r.record) else {
            return Ok(true);
        };
        let at = if v.path.is_empty() {
            "/".to_owned()
        } else {
            v.path.clone()
        };
        match policy {
            Policy::Off => Ok(true),
            Policy::Warn => {
                self.warned += 1;
                tracing::warn!(stream = %r.stream, record = number, path = %at, reason = %v.reason, "record does not match its schema");
                Ok(true)
            }
            Policy::Skip => {
                self.skipped += 1;
                tracing::debug!(stream = %r.stream, record = number, path = %at, reason = %v.reason, "record skipped");
                Ok(false)
            }
            Policy::Quarantine => {
                let line = json!({
                    "stream": r.stream,
                    "record_number": number,
                    "path": at,
                    "reason": v.reason,
                    "record": Value::Object(r.record.clone()),
                });
                self.write_quarantine(&line)?;
                self.quarantined += 1;
                Ok(false)
            }
            Policy::Fail => Err(TransformError {
                message: format!(
                    "record {} of stream `{}` does not match its schema\n  at `{at}`: {}",
                    crate::progress::group_thousands(number),
                    r.stream,
                    v.reason
                ),
                hint: Some(format!(
                    "set the validation policy of `{}` to `quarantine` to set such records aside and keep going",
                    r.stream
                )),
            }),
        }
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        match message {
            Message::Schema(s) => {
                let schema = CompiledSchema::compile(&s.schema).map_err(|e| TransformError {
                    message: format!(
                        "the schema of stream `{}` cannot be used for validation: {e}",
                        s.stream
                    ),
                    hint: Some(
                        "set the stream's validation policy to `off` to pass it through unchecked"
                            .into(),
                    ),
                })?;
                let records = self.streams.get(&s.stream).map_or(0, |st| st.records);
                self.streams
                    .insert(s.stream.clone(), StreamState { schema, records });
                out.push(Message::Schema(s));
                Ok(())
            }
            Message::Record(r) => {
                if self.keep(&r)? {
                    out.push(Message::Record(r));
                }
                Ok(())
            }
            other => {
                out.push(other);
                Ok(())
            }
        }
    }
}

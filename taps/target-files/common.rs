//! What the file targets (`target-jsonl`, `target-csv`) share: settings, the read loop, and
//! STATE handling (printed only after every file is flushed).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use dsm::singer::codec::{DEFAULT_MAX_LINE, LineReader};
use dsm::singer::message::SchemaMessage;
use dsm::singer::plugin_kit::{self as kit, PluginArgs, PluginError};
use dsm::singer::{Message, MessageKind, scan};
use serde_json::{Map, Value, json};

/// The settings both file targets accept, plus `extra` properties.
pub fn settings(extra: Value) -> Value {
    let mut props = json!({
        "destination_path": {
            "type": "string",
            "default": ".",
            "description": "Folder the files are written to (created when missing)."
        },
        "mode": {
            "type": "string",
            "enum": ["append", "overwrite"],
            "default": "append",
            "description": "`append` adds to existing files; `overwrite` replaces them on each run."
        }
    });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"type": "object", "properties": props})
}

/// Where and how to write.
pub struct Options {
    pub dir: PathBuf,
    pub overwrite: bool,
}

impl Options {
    pub fn from_config(config: &Map<String, Value>) -> Result<Self, PluginError> {
        let dir = PathBuf::from(
            config
                .get("destination_path")
                .and_then(Value::as_str)
                .unwrap_or("."),
        );
        let overwrite = match config.get("mode").and_then(Value::as_str) {
            None | Some("append") => false,
            Some("overwrite") => true,
            Some(other) => {
                return Err(PluginError::config(format!(
                    "setting `mode` is `{other}`, expected `append` or `overwrite`"
                )));
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            PluginError::config(format!("cannot create folder `{}`: {e}", dir.display()))
        })?;
        Ok(Options { dir, overwrite })
    }
}

/// A stream name as a file name: path separators and odd characters become `_`.
pub fn file_stem(stream: &str) -> String {
    stream
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn before_schema(stream: &str, line: u64) -> PluginError {
    PluginError::data_hint(
        format!("input line {line}: RECORD of stream `{stream}` came before its SCHEMA"),
        "a tap must send a stream's SCHEMA message before its records",
    )
}

/// What a file target does with each message.
pub trait Sink {
    fn schema(&mut self, stream: &str, schema: &SchemaMessage) -> Result<(), PluginError>;
    fn record(&mut self, stream: &str, line: &[u8], number: u64) -> Result<(), PluginError>;
    fn flush(&mut self) -> Result<(), PluginError>;
}

/// Reads Singer messages from `--input` or stdin into `sink`.
pub fn drive(args: &PluginArgs, sink: &mut dyn Sink) -> Result<(), PluginError> {
    let input: Box<dyn BufRead> = match &args.input {
        Some(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p).map_err(
            |e| PluginError::config(format!("cannot read input file `{}`: {e}", p.display())),
        )?)),
        None => Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            std::io::stdin(),
        )),
    };
    let mut reader = LineReader::new(input, DEFAULT_MAX_LINE);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut buf = Vec::new();
    let result = (|| {
        while reader
            .read_line(&mut buf)
            .map_err(|e| PluginError::data(format!("cannot read input: {e}")))?
        {
            let n = reader.line_number();
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |e: &dyn std::fmt::Display| {
                PluginError::data(format!(
                    "input line {n} is not a Singer message: {e}: {}",
                    dsm::singer::codec::excerpt(&buf, 80)
                ))
            };
            let env = scan(&buf).map_err(|e| bad(&e))?;
            match env.kind {
                MessageKind::Record if !env.needs_sanitizing() => {
                    let stream = env.stream.unwrap_or_default();
                    sink.record(&stream, &buf, n)?;
                }
                _ => match Message::parse(&buf).map_err(|e| bad(&e))? {
                    Message::Schema(s) => sink.schema(&s.stream, &s)?,
                    Message::Record(r) => {
                        let line = Message::Record(r.clone()).to_line();
                        sink.record(&r.stream, &line, n)?;
                    }
                    // Singer targets print the state value, not the STATE message.
                    Message::State(s) => {
                        sink.flush()?;
                        let line =
                            serde_json::to_vec(&s.value).expect("a JSON value always serialises");
                        out.write_all(&line)
                            .and_then(|()| out.write_all(b"\n"))
                            .and_then(|()| out.flush())
                            .map_err(kit::output_error)?;
                    }
                    // Files hold one version of a stream; `mode` decides what is replaced.
                    Message::ActivateVersion(_) | Message::Batch(_) | Message::Unknown(_) => {}
                },
            }
        }
        Ok(())
    })();
    let flushed = sink.flush();
    result?;
    flushed?;
    out.flush().map_err(kit::output_error)
}

//! Writing Singer messages to stdout: JSON strings, SCHEMA/STATE/ACTIVATE_VERSION lines.

use super::*;

use std::io::{self, Write};

use serde_json::{Value, json};

/// Appends `s` to `out` as a JSON string literal (with quotes).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A buffered Singer message writer on stdout.
pub struct MessageWriter<W: Write> {
    out: io::BufWriter<W>,
}

impl MessageWriter<io::Stdout> {
    /// A writer on stdout with a 256 KiB buffer.
    pub fn stdout() -> Self {
        MessageWriter::new(io::stdout())
    }
}

impl<W: Write> MessageWriter<W> {
    /// Wraps any writer.
    pub fn new(inner: W) -> Self {
        MessageWriter {
            out: io::BufWriter::with_capacity(256 * 1024, inner),
        }
    }

    /// Writes one message (a JSON value) and a newline.
    pub fn write_value(&mut self, message: &Value) -> Result<(), PluginError> {
        serde_json::to_writer(&mut self.out, message)
            .map_err(|e| output_error(io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(output_error)
    }

    /// Writes an already encoded line (the newline is added).
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), PluginError> {
        self.out.write_all(line).map_err(output_error)?;
        self.out.write_all(b"\n").map_err(output_error)
    }

    /// A `SCHEMA` message.
    pub fn schema(&mut self, stream: &str, selection: &Selection) -> Result<(), PluginError> {
        let mut msg = json!({
            "type": "SCHEMA",
            "stream": stream,
            "schema": selection.schema,
            "key_properties": selection.key_properties,
        });
        if let Some(k) = &selection.replication_key {
            msg["bookmark_properties"] = json!([k]);
        }
        self.write_value(&msg)
    }

    /// A `STATE` message.
    pub fn state(&mut self, value: &Value) -> Result<(), PluginError> {
        self.write_value(&json!({"type": "STATE", "value": value}))
    }

    /// The STATE that ends a sync, left out when there is nothing to bookmark (`{}`): a
    /// full-table sync has no bookmark to advance, and an empty STATE only makes the runner
    /// say so.
    pub fn final_state(&mut self, value: &Value) -> Result<(), PluginError> {
        if value.as_object().is_some_and(serde_json::Map::is_empty) {
            return Ok(());
        }
        self.state(value)
    }

    /// An `ACTIVATE_VERSION` message.
    pub fn activate_version(&mut self, stream: &str, version: u64) -> Result<(), PluginError> {
        self.write_value(&json!({"type": "ACTIVATE_VERSION", "stream": stream, "version": version}))
    }

    /// Flushes the buffer.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        self.out.flush().map_err(output_error)
    }
}

/// A table version for a full-table sync: milliseconds since the Unix epoch, as the SDK uses.
pub fn new_table_version() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time in RFC 3339, for `time_extracted`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

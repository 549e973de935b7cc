//! Reading the files of a Singer `BATCH` message: `file://` manifests of JSON lines, gzip or
//! plain, each line one record (the Singer SDK's `jsonl` batch encoding).
//!
//! dsm relays BATCH messages as they are when nothing inside dsm looks at the stream; when a
//! transform, validation or merge does, or the loader cannot take batches, the records are read
//! here and sent on as RECORD messages, so a batch is never a way around a field mask.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::message::BatchMessage;

/// Why the files of a BATCH message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The encoding is one dsm does not read.
    #[error(
        "BATCH of stream `{stream}`: encoding {encoding} is not supported (dsm reads `jsonl`, plain or `gzip`)"
    )]
    Encoding {
        /// The stream.
        stream: String,
        /// The encoding as sent.
        encoding: String,
    },
    /// A manifest entry is not a `file://` URI.
    #[error(
        "BATCH of stream `{stream}`: `{entry}` is not a `file://` URI (dsm reads local batch files only)"
    )]
    Scheme {
        /// The stream.
        stream: String,
        /// The entry as sent.
        entry: String,
    },
    /// A file could not be read.
    #[error("BATCH of stream `{stream}`: cannot read `{}`: {error}", path.display())]
    Io {
        /// The stream.
        stream: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A line is not a JSON object.
    #[error("BATCH of stream `{stream}`: line {line} of `{}` is not a JSON object: {problem}", path.display())]
    Line {
        /// The stream.
        stream: String,
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The batch holds more than the caller accepts.
    #[error("BATCH of stream `{stream}` holds more than {limit} bytes of records")]
    TooLarge {
        /// The stream.
        stream: String,
        /// The limit, in bytes.
        limit: u64,
    },
}

/// How the files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
}

fn compression_of(batch: &BatchMessage) -> Result<Compression, BatchError> {
    let bad = || BatchError::Encoding {
        stream: batch.stream.clone(),
        encoding: batch.encoding.to_string(),
    };
    let Value::Object(enc) = &batch.encoding else {
        return Err(bad());
    };
    if enc.get("format").and_then(Value::as_str) != Some("jsonl") {
        return Err(bad());
    }
    match enc.get("compression") {
        None | Some(Value::Null) => Ok(Compression::None),
        Some(Value::String(c)) if c == "none" => Ok(Compression::None),
        Some(Value::String(c)) if c == "gzip" => Ok(Compression::Gzip),
        Some(_) => Err(bad()),
    }
}

/// The local path of a `file://` manifest entry (percent-escapes decoded).
fn path_of(batch: &BatchMessage, entry: &Value) -> Result<PathBuf, BatchError> {
    let bad = || BatchError::Scheme {
        stream: batch.stream.clone(),
        entry: match entry {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    let text = entry.as_str().ok_or_else(bad)?;
    let rest = text.strip_prefix("file://").ok_or_else(bad)?;
    // `file:///abs/path` or `file://localhost/abs/path`.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(bad());
    }
    Ok(PathBuf::from(percent_decode(rest)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a BATCH message's encoding and manifest without reading the files, so a batch dsm
/// cannot read fails before anything of it is sent on.
pub fn check(batch: &BatchMessage) -> Result<(), BatchError> {
    compression_of(batch)?;
    for entry in &batch.manifest {
        path_of(batch, entry)?;
    }
    Ok(())
}

/// Reads every record of the batch in manifest order, calling `each` with the record; stops
/// with [`BatchError::TooLarge`] once more than `max_bytes` of record lines were read.
pub fn for_each_record<E>(
    batch: &BatchMessage,
    max_bytes: u64,
    mut each: impl FnMut(Map<String, Value>) -> Result<(), E>,
) -> Result<Result<u64, E>, BatchError> {
    let compression = compression_of(batch)?;
    let paths: Vec<PathBuf> = batch
        .manifest
        .iter()
        .map(|e| path_of(batch, e))
        .collect::<Result<_, _>>()?;
    let mut total = 0u64;
    let mut records = 0u64;
    for path in paths {
        let io = |error| BatchError::Io {
            stream: batch.stream.clone(),
            path: path.clone(),
            error,
        };
        let file = File::open(&path).map_err(io)?;
        let reader: Box<dyn Read> = match compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        };
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            // Bounded: a line never grows past what is left of the limit.
            let left = max_bytes.saturating_sub(total).saturating_add(1);
            let n = (&mut reader)
                .take(left)
                .read_until(b'\n', &mut line)
                .map_err(io)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > max_bytes {
                return Err(BatchError::TooLarge {
                    stream: batch.stream.clone(),
                    limit: max_bytes,
                });
            }
            number += 1;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(o)) => o,
                Ok(other) => {
                    return Err(BatchError::Line {
                        stream: batch.stream.clone(),
                        path: path.clone(),
                        line: number,
                        problem: format!("found {}", kind_of(&other)),
                    });
                }
                Err(e) => {
                    return Err(BatchError::Line {
                        stream: batch.stream.clone(),
                        path: path.clone(),
                        line: number,
                        problem: e.to_string(),
                    });
                }
            };
            if let Err(e) = each(record) {
                return Ok(Err(e));
            }
            records += 1;
        }
    }
    Ok(Ok(records))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn batch(encoding: Value, files: &[String]) -> BatchMessage {
        BatchMessage {
            stream: "users".into(),
            encoding,
            manifest: files.iter().map(|f| Value::String(f.clone())).collect(),
            extra: Map::new(),
        }
    }

    fn records(b: &BatchMessage, max: u64) -> Result<Vec<Value>, BatchError> {
        let mut got = Vec::new();
        let n = for_each_record(b, max, |r| {
            got.push(Value::Object(r));
            Ok::<(), ()>(())
        })?
        .expect("the callback never fails");
        assert_eq!(n as usize, got.len());
        Ok(got)
    }

    #[test]
    fn plain_and_gzip_files_are_read_in_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a b.jsonl");
        std::fs::write(&plain, "{\"id\": 1}\n\n{\"id\": 2}\r\n").unwrap();
        let gz = dir.path().join("b.jsonl.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"id\": 3}\n{\"id\": 4}").unwrap();
        enc.finish().unwrap();

        let uri = |p: &std::path::Path| format!("file://{}", p.display()).replace(' ', "%20");
        let b = batch(
            serde_json::json!({"format": "jsonl", "compression": "none"}),
            &[uri(&plain)],
        );
        assert_eq!(
            records(&b, 1 << 20).unwrap(),
            vec![serde_json::json!({"id": 1}), serde_json::json!({"id": 2})]
        );
        let b = batch(
            serde_json::json!({"format": "jsonl", "compression": "gzip"}),
            &[uri(&gz), uri(&gz)],
        );
        let ids: Vec<Value> = records(&b, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|r| r["id"].clone())
            .collect();
        assert_eq!(ids, [3, 4, 3, 4].map(Value::from));
    }

    #[test]
    fn unreadable_batches_are_refused_before_reading() {
        let b = batch(
            serde_json::json!({"format": "parquet"}),
            &["file:///x".into()],
        );
        assert!(matches!(check(&b), Err(BatchError::Encoding { .. })));
        let b = batch(
            serde_json::json!({"format": "jsonl"}),
            &["s3://bucket/x".into()],
        );
        assert!(matches!(check(&b), Err(BatchError::Scheme { .. })));
        let b = batch(
            serde_json::json!({"format": "jsonl"}),
            &["file://relative/x".into()],
        );
        assert!(matches!(check(&b), Err(BatchError::Scheme { .. })));
        let b = batch(
            serde_json::json!({"format": "jsonl", "compression": "zstd"}),
            &[],
        );
        assert!(matches!(check(&b), Err(BatchError::Encoding { .. })));
    }

    #[test]
    fn a_bad_line_or_too_much_data_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.jsonl");
        std::fs::write(&f, "{\"id\": 1}\n[1]\n").unwrap();
        let b = batch(
            serde_json::json!({"format": "jsonl"}),
            &[format!("file://{}", f.display())],
        );
        let e = records(&b, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("an array"), "{e}");
        std::fs::write(&f, "{\"id\": 1}\n".repeat(100)).unwrap();
        assert!(matches!(records(&b, 50), Err(BatchError::TooLarge { .. })));
        assert_eq!(records(&b, 10_000).unwrap().len(), 100);
    }
}

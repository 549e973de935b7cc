//! `target-csv`: a built-in Singer target of dsm that writes each stream to
//! `<destination_path>/<stream>.csv` with a header row from the stream's SCHEMA, appending or
//! overwriting, and prints each STATE message after the files are flushed.
//!
//! A SCHEMA with columns the file lacks (a new run in `append` mode, or a second SCHEMA within a
//! run) widens the file: it is rewritten with the new columns added at the end of the header,
//! existing rows keep their values and get empty cells for the new columns, and the new file
//! replaces the old one by a rename, so a crash leaves either the old or the new file. Columns
//! the SCHEMA no longer has stay in the header and are left empty. A file whose rows do not
//! match its own header is not rewritten: that is an error naming the line.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter};
use std::path::{Path, PathBuf};

use dsm::singer::message::SchemaMessage;
use dsm::singer::plugin_kit::{self as kit, About, PluginArgs, PluginError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

#[path = "../target-files/common.rs"]
mod common;

const USAGE: &str = "usage: target-csv [--about [--format json]] --config FILE [--input FILE]\n\
Reads Singer messages on stdin.\n";

fn about() -> About {
    About {
        name: "target-csv",
        description: "Writes each Singer stream to a CSV file with a header row (dsm built-in)",
        capabilities: &["about"],
        settings: common::settings(json!({
            "delimiter": {
                "type": "string",
                "default": ",",
                "description": "The field delimiter (one character)."
            }
        })),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

#[derive(Deserialize)]
struct RecordLine<'a> {
    #[serde(borrow)]
    record: HashMap<std::borrow::Cow<'a, str>, &'a RawValue>,
}

struct CsvFile {
    path: PathBuf,
    header: Vec<String>,
    writer: csv::Writer<BufWriter<File>>,
}

struct CsvSink {
    dir: PathBuf,
    overwrite: bool,
    delimiter: u8,
    files: HashMap<String, CsvFile>,
}

/// The existing header of a CSV file, when it has one.
fn existing_header(path: &Path, delimiter: u8) -> Option<Vec<String>> {
    let f = File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(f).read_line(&mut first).ok()?;
    if first.trim().is_empty() {
        return None;
    }
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(first.as_bytes());
    r.records()
        .next()?
        .ok()
        .map(|rec| rec.iter().map(str::to_owned).collect())
}

/// `current` followed by the columns of `wanted` it lacks: existing columns keep their place.
fn widened(current: &[String], wanted: &[String]) -> Vec<String> {
    let mut out = current.to_vec();
    out.extend(wanted.iter().filter(|c| !current.contains(c)).cloned());
    out
}

/// Rewrites the CSV file at `path` (whose header has `old_len` columns) with `header`, padding
/// each row with empty cells, into a temporary file beside it that then replaces it atomically.
fn widen_file(
    path: &Path,
    delimiter: u8,
    old_len: usize,
    header: &[String],
) -> Result<(), PluginError> {
    let cannot = |e: &dyn std::fmt::Display| {
        PluginError::data(format!("cannot widen `{}`: {e}", path.display()))
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| cannot(&e))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".target-csv-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| cannot(&e))?;
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(BufWriter::with_capacity(256 * 1024, tmp.as_file()));
    writer.write_record(header).map_err(|e| cannot(&e))?;
    let padding = header.len() - old_len;
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    while reader.read_byte_record(&mut rec).map_err(|e| cannot(&e))? {
        if std::mem::take(&mut first) {
            continue; // the old header
        }
        if rec.len() != old_len {
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            return Err(PluginError::data_hint(
                format!(
                    "cannot add columns to `{}`: line {line} has {} fields, its header has {old_len}",
                    path.display(),
                    rec.len()
                ),
                "the file was left unchanged; fix that line, move the file away, or use `mode: overwrite`",
            ));
        }
        writer
            .write_record(rec.iter().chain(std::iter::repeat_n(&b""[..], padding)))
            .map_err(|e| cannot(&e))?;
    }
    writer.flush().map_err(|e| cannot(&e))?;
    drop(writer);
    tmp.as_file().sync_all().map_err(|e| cannot(&e))?;
    tmp.persist(path).map_err(|e| cannot(&e.error))?;
    Ok(())
}

impl CsvSink {
    /// Opens `path` for appending rows under `header`, writing the header first when asked.
    fn open(
        &mut self,
        stream: &str,
        path: PathBuf,
        header: Vec<String>,
        truncate: bool,
        write_header: bool,
    ) -> Result<(), PluginError> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!truncate)
            .truncate(truncate)
            .open(&path)
            .map_err(|e| PluginError::data(format!("cannot write `{}`: {e}", path.display())))?;
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(BufWriter::with_capacity(256 * 1024, file));
        if write_header {
            writer.write_record(&header).map_err(|e| {
                PluginError::data(format!("cannot write `{}`: {e}", path.display()))
            })?;
        }
        self.files.insert(
            stream.to_owned(),
            CsvFile {
                path,
                header,
                writer,
            },
        );
        Ok(())
    }
}

impl common::Sink for CsvSink {
    fn schema(&mut self, stream: &str, msg: &SchemaMessage) -> Result<(), PluginError> {
        let header: Vec<String> = msg
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        // A new SCHEMA for a stream already being written: widen the file when it has new columns.
        if let Some(mut f) = self.files.remove(stream) {
            let wide = widened(&f.header, &header);
            if wide.len() == f.header.len() {
                self.files.insert(stream.to_owned(), f);
                return Ok(());
            }
            f.writer.flush().map_err(|e| {
                PluginError::data(format!("cannot write `{}`: {e}", f.path.display()))
            })?;
            let (path, old_len) = (f.path.clone(), f.header.len());
            drop(f);
            widen_file(&path, self.delimiter, old_len, &wide)?;
            return self.open(stream, path, wide, false, false);
        }
        let path = self.dir.join(format!("{}.csv", common::file_stem(stream)));
        if self.overwrite {
            return self.open(stream, path, header, true, true);
        }
        match existing_header(&path, self.delimiter) {
            None => self.open(stream, path, header, false, true),
            Some(prev) => {
                // Append under the file's own header, widened by the stream's new columns.
                let wide = widened(&prev, &header);
                if wide.len() > prev.len() {
                    widen_file(&path, self.delimiter, prev.len(), &wide)?;
                }
                self.open(stream, path, wide, false, false)
            }
        }
    }

    fn record(&mut self, stream: &str, line: &[u8], number: u64) -> Result<(), PluginError> {
        let rec: RecordLine<'_> = serde_json::from_slice(line).map_err(|e| {
            PluginError::data(format!(
                "input line {number}: RECORD without a `record` object: {e}"
            ))
        })?;
        let f = self
            .files
            .get_mut(stream)
            .ok_or_else(|| common::before_schema(stream, number))?;
        let mut fields: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(f.header.len());
        for col in &f.header {
            let raw = rec
                .record
                .get(col.as_str())
                .map(|r| r.get())
                .unwrap_or("null");
            fields.push(match raw.as_bytes().first() {
                Some(b'n') => "".into(),
                Some(b'"') => {
                    serde_json::from_str::<std::borrow::Cow<'_, str>>(raw).unwrap_or(raw.into())
                }
                _ => raw.into(),
            });
        }
        f.writer
            .write_record(fields.iter().map(|c| c.as_bytes()))
            .map_err(|e| PluginError::data(format!("cannot write `{}`: {e}", f.path.display())))
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        for f in self.files.values_mut() {
            f.writer.flush().map_err(|e| {
                PluginError::data(format!("cannot write `{}`: {e}", f.path.display()))
            })?;
        }
        Ok(())
    }
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let opts = common::Options::from_config(&config)?;
    let delimiter = match config.get("delimiter").and_then(Value::as_str) {
        None => b',',
        Some("\\t") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        Some(d) => {
            return Err(PluginError::config(format!(
                "setting `delimiter` must be one character, got `{d}`"
            )));
        }
    };
    let mut sink = CsvSink {
        dir: opts.dir,
        overwrite: opts.overwrite,
        delimiter,
        files: HashMap::new(),
    };
    common::drive(&args, &mut sink)
}

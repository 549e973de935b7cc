//! `target-csv`: a built-in Singer target of dsm that writes each stream to
//! `<destination_path>/<stream>.csv` with a header row from the stream's SCHEMA, appending or
//! overwriting, and prints each STATE message after the files are flushed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter};
use std::path::PathBuf;

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
fn existing_header(path: &PathBuf, delimiter: u8) -> Option<Vec<String>> {
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

impl common::Sink for CsvSink {
    fn schema(&mut self, stream: &str, msg: &SchemaMessage) -> Result<(), PluginError> {
        let header: Vec<String> = msg
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(f) = self.files.get(stream) {
            if header.iter().all(|h| f.header.contains(h)) {
                return Ok(());
            }
            return Err(PluginError::data_hint(
                format!(
                    "stream `{stream}` gained columns ({}) after `{}` was started",
                    header
                        .iter()
                        .filter(|h| !f.header.contains(h))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    f.path.display()
                ),
                "a CSV file has one header: use `mode: overwrite` or target-sqlite for changing schemas",
            ));
        }
        let path = self.dir.join(format!("{}.csv", common::file_stem(stream)));
        let previous = if self.overwrite {
            None
        } else {
            existing_header(&path, self.delimiter)
        };
        if let Some(prev) = &previous
            && prev != &header
        {
            return Err(PluginError::data_hint(
                format!(
                    "`{}` has the columns ({}), stream `{stream}` has ({})",
                    path.display(),
                    prev.join(", "),
                    header.join(", ")
                ),
                "use `mode: overwrite` to replace the file",
            ));
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!self.overwrite)
            .truncate(self.overwrite)
            .open(&path)
            .map_err(|e| PluginError::data(format!("cannot write `{}`: {e}", path.display())))?;
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(BufWriter::with_capacity(256 * 1024, file));
        if previous.is_none() {
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

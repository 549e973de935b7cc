//! `target-jsonl`: a built-in Singer target of dsm that writes each stream's records to
//! `<destination_path>/<stream>.jsonl`, appending or overwriting, and prints each STATE message
//! after the files are flushed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use dsm::singer::plugin_kit::{self as kit, About, PluginArgs, PluginError};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

#[path = "../target-files/common.rs"]
mod common;

const USAGE: &str = "usage: target-jsonl [--about [--format json]] --config FILE [--input FILE]\n\
Reads Singer messages on stdin.\n";

fn about() -> About {
    About {
        name: "target-jsonl",
        description: "Writes each Singer stream to a JSON-lines file (dsm built-in)",
        capabilities: &["about"],
        settings: common::settings(json!({})),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

#[derive(Deserialize)]
struct RecordLine<'a> {
    #[serde(borrow)]
    record: &'a RawValue,
}

struct JsonlSink {
    dir: PathBuf,
    overwrite: bool,
    files: HashMap<String, BufWriter<File>>,
}

impl common::Sink for JsonlSink {
    fn schema(
        &mut self,
        stream: &str,
        _schema: &dsm::singer::message::SchemaMessage,
    ) -> Result<(), PluginError> {
        if self.files.contains_key(stream) {
            return Ok(());
        }
        let path = self
            .dir
            .join(format!("{}.jsonl", common::file_stem(stream)));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!self.overwrite)
            .truncate(self.overwrite)
            .open(&path)
            .map_err(|e| PluginError::data(format!("cannot write `{}`: {e}", path.display())))?;
        self.files.insert(
            stream.to_owned(),
            BufWriter::with_capacity(256 * 1024, file),
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
        f.write_all(rec.record.get().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| PluginError::data(format!("cannot write stream `{stream}`: {e}")))
    }

    fn flush(&mut self) -> Result<(), PluginError> {
        for (stream, f) in &mut self.files {
            f.flush()
                .map_err(|e| PluginError::data(format!("cannot write stream `{stream}`: {e}")))?;
        }
        Ok(())
    }
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let opts = common::Options::from_config(&config)?;
    let mut sink = JsonlSink {
        dir: opts.dir,
        overwrite: opts.overwrite,
        files: HashMap::new(),
    };
    common::drive(&args, &mut sink)
}

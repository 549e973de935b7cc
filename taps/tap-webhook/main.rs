//! `tap-webhook`: a built-in Singer tap of dsm that sends the events a source received by
//! webhook (`POST /api/webhooks/{source}` on `dsm serve`) as records of one stream, `events`.
//!
//! dsm writes the source's pending events to a private JSON-lines file and passes its path as
//! the config key `events_file`; the tap never sees the system store. Each line is
//! `{"id", "seq", "event_id", "received_at", "payload"}`; `seq` is the delivery number. The
//! stream's replication key is `seq` and its bookmark the last number sent: lines at or below
//! it are skipped (events are delivered once, not from the bookmark on), and a STATE follows every [`STATE_EVERY`] records and the last one, so dsm can mark
//! events consumed as soon as the loader confirms them. Under Meltano alone, point
//! `events_file` at a file of that shape (for example one kept from a dsm run).

use std::io::BufRead;
use std::path::PathBuf;

use dsm::singer::codec::{DEFAULT_MAX_LINE, LineReader};
use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, StreamSpec,
};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: tap-webhook [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";
const STREAM: &str = "events";
const BOOKMARK_KEY: &str = "seq";
/// Records between two STATE messages.
const STATE_EVERY: u64 = 1000;

fn about() -> About {
    About {
        name: "tap-webhook",
        description: "Sends the events a source received by webhook on `dsm serve` (dsm built-in; dsm hands it the pending events)",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({
            "type": "object",
            "properties": {
                "secret": {
                    "type": "string",
                    "secret": true,
                    "description": "The key senders sign events with (HMAC-SHA256 over `<timestamp>.<body>`). `dsm serve` checks it; the tap does not receive it."
                },
                "events_file": {
                    "type": "string",
                    "description": "A JSON-lines file of events (`id`, `seq`, `event_id`, `received_at`, `payload`). dsm sets it to the source's pending events on every run; set it yourself only to run the tap without dsm."
                }
            }
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

fn spec() -> StreamSpec {
    StreamSpec {
        name: STREAM.into(),
        schema: json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "seq": {"type": "integer"},
                "event_id": {"type": ["string", "null"]},
                "received_at": {"type": "string", "format": "date-time"},
                "payload": {}
            }
        }),
        key_properties: vec!["id".into()],
        valid_replication_keys: vec!["seq".into()],
        replication_key: Some("seq".into()),
    }
}

fn events_file(config: &Map<String, Value>) -> Result<PathBuf, PluginError> {
    match config.get("events_file") {
        Some(Value::String(p)) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(PluginError::config_hint(
            "setting `events_file` is not set",
            "tap-webhook sends the events `dsm serve` received: run it with `dsm run` (which sets `events_file` to the pending events), or set `events_file` to a JSON-lines file of events",
        )),
    }
}

/// One line of the events file, checked.
fn read_event(
    buf: &[u8],
    path: &std::path::Path,
    line: u64,
) -> Result<Map<String, Value>, PluginError> {
    let bad = |what: String| PluginError::data(format!("`{}` line {line} {what}", path.display()));
    let obj = match serde_json::from_slice::<Value>(buf) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(bad("is not a JSON object".into())),
        Err(e) => return Err(bad(format!("is not valid JSON: {e}"))),
    };
    for key in ["id", "seq"] {
        if obj.get(key).is_none_or(|v| v.as_i64().is_none()) {
            return Err(bad(format!("has no integer `{key}`")));
        }
    }
    if !obj.contains_key("payload") {
        return Err(bad("has no `payload`".into()));
    }
    Ok(obj)
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let spec = spec();
    let mut out = MessageWriter::stdout();
    if args.discover {
        out.write_value(&kit::catalog_document(vec![spec.catalog_entry()]))?;
        return out.flush();
    }
    let path = events_file(&config)?;
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let Some(sel) = kit::select(&spec, catalog.as_ref()) else {
        return out.flush();
    };
    let bookmark = kit::bookmark(&state, STREAM, BOOKMARK_KEY).and_then(|v| v.as_i64());
    let file = std::fs::File::open(&path).map_err(|e| {
        PluginError::config(format!(
            "cannot read the events file `{}`: {e}",
            path.display()
        ))
    })?;
    // A line holds one event of at most 1 MiB (the intake's limit) plus its envelope.
    let mut reader = LineReader::new(
        Box::new(std::io::BufReader::new(file)) as Box<dyn BufRead>,
        DEFAULT_MAX_LINE,
    );
    out.schema(STREAM, &sel)?;
    let time_extracted = kit::now_rfc3339();
    let (mut buf, mut last, mut since_state) = (Vec::new(), bookmark, 0u64);
    loop {
        let more = reader
            .read_line(&mut buf)
            .map_err(|e| PluginError::data(format!("cannot read `{}`: {e}", path.display())))?;
        if !more {
            break;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut event = read_event(&buf, &path, reader.line_number())?;
        let seq = event.get("seq").and_then(Value::as_i64).unwrap_or(i64::MIN);
        if bookmark.is_some_and(|b| seq <= b) {
            continue;
        }
        if last.is_some_and(|l| seq <= l) {
            return Err(PluginError::data(format!(
                "`{}` line {}: `seq` {seq} does not follow {} (events must be in delivery order)",
                path.display(),
                reader.line_number(),
                last.unwrap_or_default()
            )));
        }
        let record: Map<String, Value> = sel
            .properties
            .iter()
            .filter_map(|p| event.shift_remove(p).map(|v| (p.clone(), v)))
            .collect();
        out.write_value(&json!({
            "type": "RECORD",
            "stream": STREAM,
            "record": record,
            "time_extracted": time_extracted,
        }))?;
        last = Some(seq);
        since_state += 1;
        if since_state >= STATE_EVERY {
            kit::set_bookmark(&mut state, STREAM, BOOKMARK_KEY, seq.into());
            out.state(&state)?;
            since_state = 0;
        }
    }
    if since_state > 0
        && let Some(seq) = last
    {
        kit::set_bookmark(&mut state, STREAM, BOOKMARK_KEY, seq.into());
        out.state(&state)?;
    }
    out.flush()
}

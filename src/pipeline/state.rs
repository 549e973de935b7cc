//! Reading the loader's stdout: each line is the state the loader has made durable.
//!
//! Like Meltano, a target's output line is taken as the state value itself (singer-target
//! convention: `json.dumps(state)` after a flush). `{}` and lines that are not a JSON object are
//! warned about and never passed on, so they cannot overwrite a bookmark.

use tokio::io::BufReader;
use tokio::process::ChildStdout;
use tokio::sync::mpsc;

use crate::singer::codec::{LineError, LineReader, excerpt};

/// Most warnings kept for the outcome (all of them still go to the log).
const MAX_WARNINGS: usize = 20;

pub(super) async fn read_loader_output(
    stdout: ChildStdout,
    label: String,
    max_line: usize,
    tx: mpsc::Sender<serde_json::Value>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut warn = |message: String| {
        tracing::warn!(plugin = %label, "{message}");
        if warnings.len() < MAX_WARNINGS {
            warnings.push(message);
        }
    };
    let mut reader = LineReader::new(BufReader::new(stdout), max_line);
    let mut buf = Vec::new();
    loop {
        match reader.read_line_async(&mut buf).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(LineError::TooLong { line_number, .. }) => {
                warn(format!(
                    "{label} printed an over-long state line {line_number}; it is not saved"
                ));
                if reader.skip_rest_of_line_async().await.is_err() {
                    break;
                }
                continue;
            }
            Err(LineError::Io(_)) => break,
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = reader.line_number();
        match serde_json::from_slice::<serde_json::Value>(&buf) {
            Ok(serde_json::Value::Object(map)) if map.is_empty() => warn(format!(
                "{label} emitted an empty state `{{}}` (line {n}); the bookmark is kept"
            )),
            Ok(value @ serde_json::Value::Object(_)) => {
                if tx.send(value).await.is_err() {
                    break;
                }
            }
            _ => warn(format!(
                "{label} printed a line that is not a JSON state object (line {n}: {}); it is not saved",
                excerpt(&buf, 60)
            )),
        }
    }
    warnings
}

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

/// Most STATE messages remembered between the loader's confirmations: a loader that never
/// echoes a state (or lags far behind) cannot make the ledger grow without bound.
const LEDGER_CAPACITY: usize = 4096;

/// Which STATE messages went to the loader, and how many records had gone before each, so
/// that a STATE the loader emits back tells how many records it confirmed.
#[derive(Debug, Default)]
pub(super) struct StateLedger {
    /// (fingerprint of the state's value, records sent before it), oldest first.
    entries: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
}

impl StateLedger {
    /// Notes that a STATE with this fingerprint went to the loader after `records` records.
    pub fn passed(&self, fingerprint: u64, records: u64) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() == LEDGER_CAPACITY {
            entries.pop_front();
        }
        entries.push_back((fingerprint, records));
    }

    /// The records confirmed by the loader emitting `state`: those sent before the latest
    /// STATE with the same value. A state dsm never passed on (a loader that writes its own)
    /// confirms nothing that can be counted: `None`.
    pub fn confirmed_by(&self, state: &serde_json::Value) -> Option<u64> {
        let wanted = fingerprint(state);
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = entries.iter().rposition(|(f, _)| *f == wanted)?;
        let records = entries[at].1;
        // Loaders confirm in order: what came before is confirmed too.
        entries.drain(..at);
        Some(records)
    }
}

/// A hash of a JSON value that ignores how it was written: key order, spacing and `1` versus
/// `1.0` (a loader re-serialises the state it echoes).
pub(super) fn fingerprint(value: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(value: &serde_json::Value, h: &mut std::hash::DefaultHasher) {
        use serde_json::Value;
        match value {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => (2u8, f.to_bits()).hash(h),
                _ => (3u8, n.to_string()).hash(h),
            },
            Value::String(s) => (4u8, s).hash(h),
            Value::Array(items) => {
                (5u8, items.len()).hash(h);
                items.iter().for_each(|v| feed(v, h));
            }
            Value::Object(map) => {
                (6u8, map.len()).hash(h);
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_unstable();
                for k in keys {
                    k.hash(h);
                    feed(&map[k], h);
                }
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    feed(value, &mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_state_written_differently_has_the_same_fingerprint() {
        let tap: serde_json::Value =
            serde_json::from_str(r#"{"bookmarks":{"users":{"id":1.0}},"currently_syncing":null}"#)
                .unwrap();
        let echoed: serde_json::Value = serde_json::from_str(
            r#"{"currently_syncing": null, "bookmarks": {"users": {"id": 1}}}"#,
        )
        .unwrap();
        assert_eq!(fingerprint(&tap), fingerprint(&echoed));
        assert_ne!(
            fingerprint(&tap),
            fingerprint(&json!({"bookmarks": {"users": {"id": 2}}, "currently_syncing": null}))
        );
        // Nesting matters: the same scalars in another shape differ.
        assert_ne!(
            fingerprint(&json!({"a": [1, 2]})),
            fingerprint(&json!({"a": [[1], 2]}))
        );
    }

    #[test]
    fn the_loader_confirms_what_was_sent_before_the_state_it_echoes() {
        let ledger = StateLedger::default();
        let s = |n: u64| json!({"bookmarks": {"users": {"id": n}}});
        ledger.passed(fingerprint(&s(1)), 10);
        ledger.passed(fingerprint(&s(2)), 20);
        ledger.passed(fingerprint(&s(3)), 30);
        assert_eq!(ledger.confirmed_by(&s(2)), Some(20));
        // A state of its own confirms nothing countable.
        assert_eq!(ledger.confirmed_by(&json!({"mine": true})), None);
        assert_eq!(ledger.confirmed_by(&s(3)), Some(30));
        // Echoing an older state than the last confirmed one finds nothing left to confirm.
        assert_eq!(ledger.confirmed_by(&s(1)), None);
    }

    #[test]
    fn the_ledger_forgets_the_oldest_states_past_its_capacity() {
        let ledger = StateLedger::default();
        for i in 0..(LEDGER_CAPACITY as u64 + 10) {
            ledger.passed(fingerprint(&json!({"n": i})), i);
        }
        assert_eq!(ledger.confirmed_by(&json!({"n": 0})), None);
        assert_eq!(ledger.confirmed_by(&json!({"n": 10})), Some(10));
    }
}

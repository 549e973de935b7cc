//! Running a transform over Singer lines the way the pipeline does.

use std::path::PathBuf;

use dsm::singer::{Message, MessageKind, scan};
use dsm::transform::{Transform, TransformError};
use serde_json::Value;

/// The conformance fixture directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance")
}

/// Reads a JSON file under the fixtures.
pub fn read_json(rel: &str) -> Value {
    let text =
        std::fs::read_to_string(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Reads a JSONL file under the fixtures, one value per non-empty line.
pub fn read_lines(rel: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: {e}: {l}")))
        .collect()
}

/// Runs `t` over `input` as the pipeline does: STATE and untouched streams pass by, every
/// other message goes through `apply`. Output is re-read from serialised lines.
pub fn run(t: &mut dyn Transform, input: &[Value]) -> Result<Vec<Value>, TransformError> {
    let mut out = Vec::new();
    for v in input {
        let line = serde_json::to_vec(v).unwrap();
        let msg = Message::parse(&line).unwrap();
        let passes = match &msg {
            Message::State(_) => true,
            m => !m.stream().is_some_and(|s| t.touches(s)),
        };
        if passes {
            out.push(msg);
        } else {
            t.apply(msg, &mut out)?;
        }
    }
    Ok(out
        .iter()
        .map(|m| serde_json::from_slice(&m.to_line()).unwrap())
        .collect())
}

/// Like [`run`], but as the pipeline treats records: a RECORD is first offered to
/// [`Transform::apply_record_line`] as its line, and parsed only when that declines. Returns
/// the output and how many records took the line path.
pub fn run_lines(
    t: &mut dyn Transform,
    input: &[Value],
) -> Result<(Vec<Value>, usize), TransformError> {
    let mut out = Vec::new();
    let mut by_line = 0;
    for v in input {
        let line = serde_json::to_vec(v).unwrap();
        let env = scan(&line).unwrap();
        if env.kind == MessageKind::Record {
            let stream = env.stream.as_deref().unwrap();
            let mut bytes = Vec::new();
            if t.touches(stream) && t.apply_record_line(stream, &line, &mut bytes)? {
                by_line += 1;
                for l in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    out.push(serde_json::from_slice(l).unwrap());
                }
                continue;
            }
        }
        let msg = Message::parse(&line).unwrap();
        let passes = match &msg {
            Message::State(_) => true,
            m => !m.stream().is_some_and(|s| t.touches(s)),
        };
        let mut produced = Vec::new();
        if passes {
            produced.push(msg);
        } else {
            t.apply(msg, &mut produced)?;
        }
        out.extend(
            produced
                .iter()
                .map(|m| serde_json::from_slice::<Value>(&m.to_line()).unwrap()),
        );
    }
    Ok((out, by_line))
}

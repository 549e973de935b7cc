//! The merge stages of one run: every source of a merged stream that the run's extractor feeds,
//! as one pipeline transform, plus the hooks the runner calls when the loader confirms a STATE
//! and when the run ends.
//!
//! The stages share one SQLite connection's worth of discipline: they run on the same task, and
//! before a stage writes, the stage that wrote last commits (two open write transactions on one
//! database would wait for each other).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::MergeError;
use super::stage::MergeStage;
use crate::singer::Message;
use crate::store::merged::{MergeRunStats, MergedTables};
use crate::transform::{LinesMapped, Transform, TransformError};

/// How many extractor STATE values are remembered while waiting for the loader to echo one.
/// Older ones are forgotten: their records then wait for a later STATE or the end of the run
/// (being late to confirm is safe; being early is not).
const MAX_MARKS: usize = 4096;

struct Inner {
    stages: Vec<MergeStage>,
    /// The stage that wrote last (its open batch is committed before another stage writes).
    active: Option<usize>,
    /// Extractor STATE messages seen so far.
    mark: u64,
    /// STATE values not yet echoed by the loader, with the mark they begin.
    marks: VecDeque<(u64, Value)>,
}

/// The merge stages of one run, shared by the pipeline transform and the runner's hooks.
#[derive(Clone)]
pub struct MergeRun {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MergeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeRun").finish_non_exhaustive()
    }
}

impl MergeRun {
    /// The run's stages (one per merged stream and source the extractor feeds).
    pub fn new(stages: Vec<MergeStage>) -> Self {
        MergeRun {
            inner: Arc::new(Mutex::new(Inner {
                stages,
                active: None,
                mark: 0,
                marks: VecDeque::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still worth reporting.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The transform to put last between the extractor (and mappers) and the loader.
    pub fn transform(&self) -> Box<dyn Transform> {
        Box::new(MergeTransform { run: self.clone() })
    }

    /// The loader emitted `state` after flushing: what the merge stages sent before the
    /// extractor's STATE with that value is in the target. Commits the open batches too, so the
    /// caller's own write (the bookmark) does not wait for them.
    pub fn on_loader_state(&self, state: &Value) -> Result<(), MergeError> {
        let mut inner = self.lock();
        for s in &mut inner.stages {
            s.commit()?;
        }
        // The earliest matching mark: when the extractor repeated a value, the loader may have
        // echoed the first of them.
        let Some(i) = inner.marks.iter().position(|(_, v)| v == state) else {
            return Ok(());
        };
        let (mark, _) = inner.marks[i].clone();
        inner.marks.drain(..=i);
        for s in &mut inner.stages {
            s.confirm(Some(mark))?;
        }
        Ok(())
    }

    /// Ends the run: commits, and when the run succeeded (the loader exited well after its
    /// input ended, so it holds everything) forgets this run's unconfirmed keys. Records the
    /// counts in `merge_run_stats` of `conn` and returns them.
    pub fn finish(
        &self,
        succeeded: bool,
        conn: &dyn MergedTables,
        run_id: &str,
    ) -> Result<Vec<MergeRunStats>, MergeError> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for s in &mut inner.stages {
            if succeeded {
                s.confirm(None)?;
            }
            s.commit()?;
            out.push(MergeRunStats {
                stream: s.declaration().name.clone(),
                source: s.source().to_owned(),
                stats: s.stats(),
            });
        }
        drop(inner);
        conn.record_run_stats(run_id, &out)?;
        Ok(out)
    }
}

/// The pipeline side of a [`MergeRun`].
struct MergeTransform {
    run: MergeRun,
}

impl Transform for MergeTransform {
    fn touches(&self, stream: &str) -> bool {
        self.run
            .lock()
            .stages
            .iter()
            .any(|s| s.source_stream() == stream)
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        let mut inner = self.run.lock();
        let Some(stream) = message.stream().map(str::to_owned) else {
            out.push(message);
            return Ok(());
        };
        match inner.feeding(&stream).as_slice() {
            [] => out.push(message),
            [only] => {
                inner.switch_to(*only)?;
                inner.stages[*only].apply(message, out)?;
            }
            many => {
                // One extractor stream feeding several merged streams: each gets a copy.
                for &i in many {
                    inner.switch_to(i)?;
                    inner.stages[i].apply(message.clone(), out)?;
                }
            }
        }
        Ok(())
    }

    // Runs of record lines go to the one stage a stream feeds (a stream feeding several takes
    // the full path, which copies each record).
    fn maps_record_lines(&self, stream: &str) -> bool {
        let inner = self.run.lock();
        matches!(inner.feeding(stream)[..], [only] if inner.stages[only].maps_record_lines(stream))
    }

    fn apply_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[std::ops::Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        let mut inner = self.run.lock();
        let [only] = inner.feeding(stream)[..] else {
            return LinesMapped::default();
        };
        if let Err(e) = inner.switch_to(only) {
            return LinesMapped {
                done: 0,
                error: Some(e.into()),
            };
        }
        inner.stages[only].apply_record_lines(stream, buf, lines, out)
    }

    fn on_state(&mut self, state: &Value) -> Result<(), TransformError> {
        let mut inner = self.run.lock();
        inner.mark += 1;
        let mark = inner.mark;
        for s in &mut inner.stages {
            s.set_mark(mark);
        }
        if inner.marks.back().is_none_or(|(_, v)| v != state) {
            if inner.marks.len() == MAX_MARKS {
                inner.marks.pop_front();
            }
            inner.marks.push_back((mark, state.clone()));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TransformError> {
        let mut inner = self.run.lock();
        for s in &mut inner.stages {
            s.finish()?;
        }
        Ok(())
    }
}

impl Inner {
    /// The stages that `stream` feeds, by index.
    fn feeding(&self, stream: &str) -> Vec<usize> {
        self.stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.source_stream() == stream)
            .map(|(i, _)| i)
            .collect()
    }

    fn switch_to(&mut self, i: usize) -> Result<(), MergeError> {
        if let Some(prev) = self.active
            && prev != i
        {
            self.stages[prev].commit()?;
        }
        self.active = Some(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::declaration::MergedStream;
    use crate::merge::resolver::RunContext;
    use serde_json::json;

    fn line(v: Value) -> Message {
        Message::from_value(v).unwrap()
    }

    fn unconfirmed(path: &std::path::Path) -> Vec<(String, i64, String)> {
        let conn = crate::store::merged::MergedDb::open(path).unwrap();
        conn.unconfirmed()
            .unwrap()
            .into_iter()
            .map(|(_, run, mark, key)| (run, mark, key))
            .collect()
    }

    fn stage(path: &std::path::Path, run: &str) -> MergeRun {
        let decl = MergedStream::parse(&json!({
            "name": "m",
            "sources": [{"extractor": "a", "stream": "s"}, {"extractor": "b", "stream": "s"}],
            "key": ["id"]
        }))
        .unwrap();
        let conn = crate::store::merged::MergedDb::open(path).unwrap();
        let ctx = RunContext {
            run_id: run.into(),
            started_at: chrono::Utc::now(),
            lease: None,
        };
        MergeRun::new(vec![MergeStage::new(conn, decl, "a", ctx).unwrap()])
    }

    fn record(id: i64) -> Message {
        line(json!({"type": "RECORD", "stream": "s", "record": {"id": id, "v": id}}))
    }

    #[test]
    fn only_what_came_before_the_echoed_state_is_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dsm.db");
        let run = stage(&db, "r1");
        let mut t = run.transform();
        let mut out = Vec::new();
        let schema = json!({"type": "SCHEMA", "stream": "s", "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "v": {"type": "integer"}}}});
        t.apply(line(schema), &mut out).unwrap();
        t.apply(record(1), &mut out).unwrap();
        t.on_state(&json!({"n": 1})).unwrap();
        t.apply(record(2), &mut out).unwrap();
        t.on_state(&json!({"n": 1})).unwrap();
        t.apply(record(3), &mut out).unwrap();
        t.on_state(&json!({"n": 2})).unwrap();
        t.apply(record(4), &mut out).unwrap();
        assert_eq!(out.len(), 5, "the merged SCHEMA and four records");

        // An echo the extractor never sent confirms nothing.
        run.on_loader_state(&json!({"n": 9})).unwrap();
        assert_eq!(unconfirmed(&db).len(), 4);
        // `{"n": 1}` came twice; the loader may have echoed the first: only record 1 is safe.
        run.on_loader_state(&json!({"n": 1})).unwrap();
        let keys: Vec<String> = unconfirmed(&db).into_iter().map(|r| r.2).collect();
        assert_eq!(keys, ["[2]", "[3]", "[4]"]);
        run.on_loader_state(&json!({"n": 2})).unwrap();
        let keys: Vec<String> = unconfirmed(&db).into_iter().map(|r| r.2).collect();
        assert_eq!(keys, ["[4]"]);

        // The run fails here: the next run sends record 4 again, right after the SCHEMA.
        t.finish().unwrap();
        let conn = crate::store::merged::MergedDb::open(&db).unwrap();
        run.finish(false, &conn, "r1").unwrap();
        drop((t, run));
        let next = stage(&db, "r2");
        let mut t = next.transform();
        let mut out = Vec::new();
        let schema = json!({"type": "SCHEMA", "stream": "s", "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "v": {"type": "integer"}}}});
        t.apply(line(schema), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        match &out[1] {
            Message::Record(r) => assert_eq!(r.record["id"], json!(4)),
            other => panic!("{other:?}"),
        }
        t.finish().unwrap();
        let stats = next.finish(true, &conn, "r2").unwrap();
        assert_eq!(stats[0].stats.resent, 1);
        assert!(
            unconfirmed(&db).is_empty(),
            "a run that ends well confirms all"
        );
        assert_eq!(conn.run_stats("r2").unwrap(), stats);
    }

    /// A run of record lines gives, byte for byte, what the records one by one give; the run
    /// stops (for the full path) at a line of another stream or a bad line, and a failing
    /// record is reported at its own line with the output before it kept.
    #[test]
    fn a_run_of_record_lines_resolves_as_records_one_by_one() {
        let schema = json!({"type": "SCHEMA", "stream": "s", "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "v": {"type": "integer"}}}});
        let texts: Vec<String> = [1, 2, 1, 3, 2]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"type": "RECORD", "stream": "s", "record": {"id": id, "v": i}}).to_string()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();

        // One by one.
        let one = stage(&dir.path().join("one.db"), "r1");
        let mut t = one.transform();
        let mut messages = Vec::new();
        t.apply(line(schema.clone()), &mut messages).unwrap();
        messages.clear();
        for text in &texts {
            t.apply(Message::parse(text.as_bytes()).unwrap(), &mut messages)
                .unwrap();
        }
        t.finish().unwrap();
        let mut expected = Vec::new();
        for m in &messages {
            m.write_line(&mut expected);
            expected.push(b'\n');
        }

        // As a run, with a line of another stream and a bad line after the fifth.
        let two = stage(&dir.path().join("two.db"), "r1");
        let mut t = two.transform();
        assert!(!t.maps_record_lines("s"), "not before the SCHEMA");
        t.apply(line(schema), &mut Vec::new()).unwrap();
        assert!(t.maps_record_lines("s") && !t.maps_record_lines("other"));
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        let tail = [
            r#"{"type":"RECORD","stream":"other","record":{"id":1}}"#.to_owned(),
            r#"{"type":"RECORD","stream":"s","record":{"v":1}}"#.to_owned(),
        ];
        for text in texts.iter().chain(&tail) {
            let start = buf.len();
            buf.extend_from_slice(text.as_bytes());
            ranges.push(start..buf.len());
            buf.push(b'\n');
        }
        let mut out = Vec::new();
        let mapped = t.apply_record_lines("s", &buf, &ranges, &mut out);
        assert_eq!((mapped.done, mapped.error.is_none()), (5, true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        t.finish().unwrap();
        assert_eq!(
            unconfirmed(&dir.path().join("one.db")),
            unconfirmed(&dir.path().join("two.db"))
        );

        // A record without its key under the default rule fails at its own line.
        let mut out = b"kept".to_vec();
        let mapped = t.apply_record_lines("s", &buf, &ranges[6..], &mut out);
        assert_eq!(mapped.done, 0);
        assert!(mapped.error.is_some(), "a record without a key");
        assert_eq!(out, b"kept");
    }
}

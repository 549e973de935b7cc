//! The pipeline stage for one source of a merged stream: takes the source's SCHEMA and RECORD
//! messages and emits the merged stream's SCHEMA and the RECORDs whose resolved value changed.

use chrono::{Duration, Utc};
use serde_json::{Map, Value};

use super::MergeError;
use super::declaration::MergedStream;
use super::resolver::{Resolver, ResolverStats, RunContext};
use crate::singer::Message;
use crate::singer::message::{RecordMessage, SchemaMessage};
use crate::store::merged::MergedTables;
use crate::transform::{LinesMapped, Transform, TransformError};

/// Resolves one source's records into a merged stream (see the [`Transform`] impl).
#[derive(Debug)]
pub struct MergeStage {
    decl: MergedStream,
    source: String,
    source_stream: String,
    run: RunContext,
    conn: Option<Box<dyn MergedTables>>,
    resolver: Option<Resolver>,
}

impl MergeStage {
    /// A stage for the source named `source` of `decl`, storing into `conn`.
    pub fn new(
        conn: impl Into<Box<dyn MergedTables>>,
        decl: MergedStream,
        source: &str,
        run: RunContext,
    ) -> Result<Self, MergeError> {
        let source_stream = match decl.source(source) {
            Some(s) => s.stream.clone(),
            None => {
                return Err(MergeError::declaration(format!(
                    "`{source}` is not a source of merged stream `{}`",
                    decl.name
                ))
                .with_hint(format!("its sources are: {}", decl.priority.join(", "))));
            }
        };
        Ok(MergeStage {
            decl,
            source: source.to_owned(),
            source_stream,
            run,
            conn: Some(conn.into()),
            resolver: None,
        })
    }

    fn connection(&mut self) -> Result<&dyn MergedTables, MergeError> {
        match (&mut self.resolver, &self.conn) {
            (Some(r), _) => r.connection(),
            (None, Some(c)) => Ok(c.as_ref()),
            (None, None) => unreachable!("the connection moves into the resolver"),
        }
    }

    fn on_schema(&mut self, schema: SchemaMessage) -> Result<SchemaMessage, MergeError> {
        let name = self.decl.name.clone();
        let stored = self.connection()?.load_schemas(&name)?;
        let mut all: Vec<(&str, &SchemaMessage)> = stored
            .iter()
            .filter(|(s, _)| *s != self.source && self.decl.source(s).is_some())
            .map(|(s, m)| (s.as_str(), m))
            .collect();
        all.push((self.source.as_str(), &schema));
        // Checked before any record of this source moves.
        let merged = self.decl.merged_schema(&all)?;
        let source = self.source.clone();
        self.connection()?.save_schema(&name, &source, &schema)?;
        match &self.resolver {
            Some(r) if r_key(r) != merged.key => {
                return Err(MergeError::declaration(format!(
                    "the key of merged stream `{}` changed within a run",
                    self.decl.name
                )));
            }
            Some(_) => {}
            None => {
                let conn = self
                    .conn
                    .take()
                    .expect("no resolver yet, so the stage holds the connection");
                self.resolver = Some(Resolver::new(
                    conn,
                    self.decl.clone(),
                    merged.key.clone(),
                    self.run.clone(),
                )?);
            }
        }
        Ok(merged.message(&self.decl.name))
    }

    /// The merged records an earlier, failed run sent without the loader confirming them
    /// (see [`Resolver::recover`]); empty until the resolver exists.
    fn recover(&mut self) -> Result<Vec<RecordMessage>, MergeError> {
        let Some(resolver) = self.resolver.as_mut() else {
            return Ok(Vec::new());
        };
        Ok(resolver
            .recover()?
            .into_iter()
            .map(|record| self.merged_record(record))
            .collect())
    }

    fn merged_record(&self, record: Map<String, Value>) -> RecordMessage {
        RecordMessage {
            stream: self.decl.name.clone(),
            record,
            version: None,
            time_extracted: None,
            extra: Map::new(),
        }
    }

    /// The merged stream's declaration.
    pub fn declaration(&self) -> &MergedStream {
        &self.decl
    }

    /// The source this stage resolves.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The extractor's stream this stage takes.
    pub fn source_stream(&self) -> &str {
        &self.source_stream
    }

    /// Records sent from now on are tagged with `mark` (see [`Resolver::confirm`]).
    pub fn set_mark(&mut self, mark: u64) {
        if let Some(r) = self.resolver.as_mut() {
            r.set_mark(mark);
        }
    }

    /// The loader confirmed what this run sent before `mark` (`None`: everything).
    pub fn confirm(&mut self, before: Option<u64>) -> Result<(), MergeError> {
        match self.resolver.as_mut() {
            Some(r) => r.confirm(before),
            None => Ok(()),
        }
    }

    /// What the stage did so far.
    pub fn stats(&self) -> ResolverStats {
        self.resolver
            .as_ref()
            .map(|r| r.stats().clone())
            .unwrap_or_default()
    }

    fn on_record(&mut self, record: RecordMessage) -> Result<Option<RecordMessage>, MergeError> {
        let Some(resolver) = self.resolver.as_mut() else {
            return Err(MergeError::data(format!(
                "stream `{}` of source `{}` sent a RECORD before its SCHEMA (merged stream `{}`)",
                self.source_stream, self.source, self.decl.name
            )));
        };
        let time = record.time_extracted.as_ref().and_then(Value::as_str);
        let resolved = resolver.resolve(&self.source, record.record, time)?;
        Ok(resolved.map(|record| self.merged_record(record)))
    }

    /// Commits what was resolved so far. The pipeline can call this when the loader confirms
    /// a STATE, so the store never runs ahead of the target by more than one batch.
    pub fn commit(&mut self) -> Result<(), MergeError> {
        match self.resolver.as_mut() {
            Some(r) => r.flush(),
            None => Ok(()),
        }
    }

    /// Commits what was resolved, prunes the conflict log by `conflict_retention_days`, and
    /// returns the counts for the run history.
    pub fn finish(&mut self) -> Result<ResolverStats, MergeError> {
        if let Some(days) = self.decl.conflict_retention_days {
            // A retention past the calendar's start keeps everything.
            let cutoff = Duration::try_days(i64::from(days))
                .and_then(|d| Utc::now().checked_sub_signed(d))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
            let name = self.decl.name.clone();
            self.connection()?.prune_conflicts(cutoff, Some(&name))?;
        }
        match self.resolver.as_mut() {
            Some(r) => {
                r.flush()?;
                Ok(r.stats().clone())
            }
            None => Ok(ResolverStats::default()),
        }
    }
}

fn r_key(r: &Resolver) -> Vec<String> {
    r.key().to_vec()
}

impl Transform for MergeStage {
    fn touches(&self, stream: &str) -> bool {
        stream == self.source_stream
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        match message {
            Message::Schema(s) if s.stream == self.source_stream => {
                let first = self.resolver.is_none();
                out.push(Message::Schema(self.on_schema(s)?));
                if first {
                    out.extend(self.recover()?.into_iter().map(Message::Record));
                }
            }
            Message::Record(r) if r.stream == self.source_stream => {
                if let Some(m) = self.on_record(r)? {
                    out.push(Message::Record(m));
                }
            }
            // A source's full-table version says nothing about the merged stream.
            Message::ActivateVersion(a) if a.stream == self.source_stream => {}
            Message::Batch(b) if b.stream == self.source_stream => {
                return Err(TransformError {
                    message: format!(
                        "merged stream `{}` cannot take BATCH messages from source `{}`",
                        self.decl.name, self.source
                    ),
                    hint: Some("turn off batch messages for this extractor".into()),
                });
            }
            other => out.push(other),
        }
        Ok(())
    }

    // A run of record lines is parsed first, so the stored rows of all their keys are read in
    // one go (see [`Resolver::prefetch`]); each is then resolved as `apply` would.
    fn maps_record_lines(&self, stream: &str) -> bool {
        stream == self.source_stream && self.resolver.is_some()
    }

    fn apply_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[std::ops::Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        if !self.maps_record_lines(stream) {
            return LinesMapped::default();
        }
        // Lines that are not a RECORD of this stream (or not valid) end the run here: the
        // full path takes them with its own errors.
        let records: Vec<RecordMessage> = lines
            .iter()
            .map_while(|r| match Message::parse(&buf[r.clone()]) {
                Ok(Message::Record(record)) if record.stream == self.source_stream => Some(record),
                _ => None,
            })
            .collect();
        let parsed = records.len();
        let mut records = records.into_iter();
        // What is read ahead ends with the batch: when one ends inside the run, the rest of
        // the run is read ahead again.
        let mut read_for = None;
        LinesMapped::each(parsed, out, |_, out| {
            let resolver = self
                .resolver
                .as_mut()
                .expect("maps_record_lines checked it");
            let batch = resolver.batches_ended();
            if read_for != Some(batch) {
                resolver.prefetch(&self.source, records.as_slice().iter().map(|r| &r.record))?;
                read_for = Some(batch);
            }
            let record = records.next().expect("one record a parsed line");
            if let Some(merged) = self.on_record(record)? {
                Message::Record(merged).write_line(out);
                out.push(b'\n');
            }
            Ok(true)
        })
    }
}

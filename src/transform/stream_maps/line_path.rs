//! The raw-line path: record lines mapped from their bytes, without building messages,
//! on several threads for long runs.

use super::*;

use crate::singer::raw::{Field, RecordLine};
use crate::transform::expr::{Context, EvalError, Faker};
use crate::transform::{LinesMapped, TransformError};
use serde_json::Value;
use std::cell::RefCell;
use std::ops::Range;

/// Runs shorter than this many lines per thread are mapped on the calling thread alone.
pub(super) const MIN_LINES_PER_THREAD: usize = 64;

/// The line path: a RECORD mapped from its line, writing what [`StreamMaps::map_record`]
/// followed by [`Message::write_line`] writes, without building the record.
impl StreamMaps {
    pub(super) fn map_record_line(
        &mut self,
        stream: &str,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TransformError> {
        let Some(reg) = self.streams.get_mut(stream) else {
            // The full path reports the missing SCHEMA.
            return Ok(false);
        };
        let Some(reads) = reg.line_reads.as_deref() else {
            return Ok(false);
        };
        let map = LineMap {
            mappers: &reg.mappers,
            reads,
            config: &self.map_config,
            stream,
        };
        let done = map.map(
            Some(&self.faker),
            &mut self.scratch,
            reg.records + 1,
            line,
            out,
        )?;
        if done {
            reg.records += 1;
        }
        Ok(done)
    }

    /// [`Transform::apply_record_lines`]: a long run of lines is cut into one part per thread
    /// of rayon's pool, unless the stream's expressions use `fake` (whose values depend on
    /// the order of the calls). The parts' outputs are joined in line order, and the first
    /// part that stops (an error, or a line for the full path) ends the run there, as mapping
    /// the lines one by one would.
    pub(super) fn map_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        let StreamMaps {
            streams,
            map_config,
            faker,
            scratch,
            parts,
            ..
        } = self;
        let Some(reg) = streams.get_mut(stream) else {
            return LinesMapped::default();
        };
        let Some(reads) = reg.line_reads.as_deref() else {
            return LinesMapped::default();
        };
        let map = LineMap {
            mappers: &reg.mappers,
            reads,
            config: map_config,
            stream,
        };
        let first = reg.records + 1;
        let threads = if reg.in_order {
            1
        } else {
            rayon::current_num_threads().min(lines.len() / MIN_LINES_PER_THREAD)
        };
        let result = if threads <= 1 {
            map.map_all(Some(faker), scratch, first, buf, lines, out)
        } else {
            let size = lines.len().div_ceil(threads);
            let mut chunks = lines.chunks(size);
            let head_lines = chunks.next().unwrap_or_default();
            let rest = chunks.len();
            if parts.len() < rest {
                parts.resize_with(rest, Part::default);
            }
            let mut head = LinesMapped::default();
            rayon::in_place_scope(|s| {
                for (k, (chunk, part)) in chunks.zip(parts.iter_mut()).enumerate() {
                    let map = &map;
                    let number = first + ((k + 1) * size) as u64;
                    s.spawn(move |_| {
                        part.out.clear();
                        part.result = Some(map.map_all(
                            None,
                            &mut part.scratch,
                            number,
                            buf,
                            chunk,
                            &mut part.out,
                        ));
                    });
                }
                head = map.map_all(None, scratch, first, buf, head_lines, out);
            });
            let mut result = head;
            if result.done == head_lines.len() {
                for (k, part) in parts.iter_mut().take(rest).enumerate() {
                    let mapped = part.result.take().unwrap_or_default();
                    out.extend_from_slice(&part.out);
                    result.done += mapped.done;
                    result.error = mapped.error;
                    let len = size.min(lines.len() - (k + 1) * size);
                    if result.error.is_some() || mapped.done < len {
                        break;
                    }
                }
            }
            for part in parts.iter_mut() {
                part.result = None;
            }
            result
        };
        reg.records += result.done as u64 + u64::from(result.error.is_some());
        result
    }
}

/// A thread's share of a run of record lines, kept from run to run.
#[derive(Default)]
pub(super) struct Part {
    scratch: LineScratch,
    out: Vec<u8>,
    result: Option<LinesMapped>,
}

/// What maps the record lines of one stream; shared by the threads of a run.
pub(super) struct LineMap<'a> {
    mappers: &'a [Mapper],
    /// The properties the expressions read.
    reads: &'a [String],
    config: &'a Value,
    stream: &'a str,
}

impl LineMap<'_> {
    /// Maps `lines` (ranges of `buf`) in order, the first being record number `first` of the
    /// stream. Stops at the first line that fails or needs the full path, leaving `out` as it
    /// was before that line.
    pub(super) fn map_all(
        &self,
        fake: Option<&RefCell<Faker>>,
        sc: &mut LineScratch,
        first: u64,
        buf: &[u8],
        lines: &[Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        LinesMapped::each(lines.len(), out, |i, out| {
            self.map(fake, sc, first + i as u64, &buf[lines[i].clone()], out)
        })
    }

    /// Maps one record line, record number `number` of the stream; `Ok(false)` (nothing
    /// written) when the line needs the full path.
    pub(super) fn map(
        &self,
        fake: Option<&RefCell<Faker>>,
        sc: &mut LineScratch,
        number: u64,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TransformError> {
        let stream = self.stream;
        let reads = self.reads;
        if !sc.line.split(line) {
            return Ok(false);
        }
        for name in reads {
            match sc.line.property(line, name) {
                Some(f) => {
                    let Some(v) = read_field(line, f) else {
                        return Ok(false);
                    };
                    match sc.partial.get_mut(name) {
                        Some(slot) => *slot = v,
                        None => {
                            sc.partial.insert(name.clone(), v);
                        }
                    }
                }
                None => {
                    sc.partial.swap_remove(name);
                }
            }
        }
        for mapper in self.mappers {
            let c = match &mapper.kind {
                Kind::Remove => continue,
                Kind::Same => {
                    sc.slots.clear();
                    sc.slots.extend(
                        (0..sc.line.record.len()).map(|i| (Name::Field(i), Source::Field(i))),
                    );
                    write_line(out, line, &sc.line, &mapper.alias_json, &sc.slots, &[], &[]);
                    continue;
                }
                Kind::Custom(c) => c,
            };
            let ctx = Context {
                record: &sc.partial,
                property: None,
                config: self.config,
                stream_name: &mapper.alias,
                original_stream_name: stream,
                fake,
            };
            if let Some(f) = &c.filter {
                let keep = f
                    .eval(&ctx)
                    .map_err(|e| eval_error(stream, number, FILTER, f, &e))?
                    .truthy();
                if !keep {
                    continue;
                }
            }
            // The values, in the order the full path computes them (so the same error comes
            // first).
            sc.sources.clear();
            sc.values.clear();
            for (prop, expr) in &c.props {
                let Some(expr) = expr else {
                    sc.sources.push(None);
                    continue;
                };
                let source = if let Some(p) = expr.as_property() {
                    match sc.line.position(line, p) {
                        Some(i) => Source::Field(i),
                        None => {
                            let e = EvalError::NameNotDefined(p.to_owned());
                            return Err(eval_error(stream, number, prop, expr, &e));
                        }
                    }
                } else {
                    let pctx = Context {
                        property: Some(prop),
                        ..ctx
                    };
                    let v = expr
                        .eval_json(&pctx)
                        .map_err(|e| eval_error(stream, number, prop, expr, &e))?;
                    sc.values.push(v);
                    Source::Value(sc.values.len() - 1)
                };
                sc.sources.push(Some(source));
            }
            // The output properties, in the order `apply` leaves them in.
            let name_of = |n: Name| -> &[u8] {
                match n {
                    Name::Field(i) => &line[sc.line.record[i].key.clone()],
                    Name::Prop(j) => c.props[j].0.as_bytes(),
                }
            };
            sc.slots.clear();
            if c.include_by_default {
                sc.slots
                    .extend((0..sc.line.record.len()).map(|i| (Name::Field(i), Source::Field(i))));
            } else {
                for k in c.key_properties.iter().flatten() {
                    let found = sc.line.position(line, k);
                    if let Some(i) = found
                        && !sc
                            .slots
                            .iter()
                            .any(|(n, _)| matches!(n, Name::Field(x) if *x == i))
                    {
                        sc.slots.push((Name::Field(i), Source::Field(i)));
                    }
                }
            }
            for (j, ((prop, _), source)) in c.props.iter().zip(&sc.sources).enumerate() {
                let at = sc
                    .slots
                    .iter()
                    .position(|(n, _)| name_of(*n) == prop.as_bytes());
                match (source, at) {
                    (None, Some(at)) => {
                        sc.slots.remove(at);
                    }
                    (None, None) => {}
                    (Some(s), Some(at)) => sc.slots[at].1 = *s,
                    (Some(s), None) => sc.slots.push((Name::Prop(j), *s)),
                }
            }
            write_line(
                out,
                line,
                &sc.line,
                &mapper.alias_json,
                &sc.slots,
                &c.prop_keys,
                &sc.values,
            );
        }
        Ok(true)
    }
}

/// A property's value as the full parser reads it; `None` if it cannot be read (which
/// [`RecordLine::split`] rules out).
pub(super) fn read_field(line: &[u8], f: &Field) -> Option<Value> {
    if let Some(v) = &f.parsed {
        return Some(v.clone());
    }
    let bytes = &line[f.value.clone()];
    if let [b'"', inner @ .., b'"'] = bytes
        && !inner.contains(&b'\\')
    {
        return std::str::from_utf8(inner)
            .ok()
            .map(|s| Value::String(s.to_owned()));
    }
    serde_json::from_slice(bytes).ok()
}

pub(super) fn write_field(out: &mut Vec<u8>, line: &[u8], f: &Field) {
    match &f.parsed {
        None => out.extend_from_slice(&line[f.value.clone()]),
        Some(v) => serde_json::to_writer(&mut *out, v).expect("a JSON value always serialises"),
    }
}

/// Writes one RECORD line (and its newline) as [`Message::write_line`] would: `type`,
/// `stream`, `record`, `version`, `time_extracted`, then the other keys of the input line.
pub(super) fn write_line(
    out: &mut Vec<u8>,
    line: &[u8],
    input: &RecordLine,
    alias_json: &[u8],
    slots: &[(Name, Source)],
    prop_keys: &[Vec<u8>],
    values: &[Value],
) {
    out.extend_from_slice(b"{\"type\":\"RECORD\",\"stream\":");
    out.extend_from_slice(alias_json);
    out.extend_from_slice(b",\"record\":{");
    for (n, (name, source)) in slots.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        match name {
            Name::Field(i) => {
                out.push(b'"');
                out.extend_from_slice(&line[input.record[*i].key.clone()]);
                out.push(b'"');
            }
            Name::Prop(j) => out.extend_from_slice(&prop_keys[*j]),
        }
        out.push(b':');
        match source {
            Source::Field(i) => write_field(out, line, &input.record[*i]),
            Source::Value(k) => serde_json::to_writer(&mut *out, &values[*k])
                .expect("a JSON value always serialises"),
        }
    }
    out.push(b'}');
    const FIRST: [&[u8]; 2] = [b"version", b"time_extracted"];
    for key in FIRST {
        if let Some(f) = input.envelope.iter().find(|f| &line[f.key.clone()] == key) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            write_field(out, line, f);
        }
    }
    for f in &input.envelope {
        let key = &line[f.key.clone()];
        if !FIRST.contains(&key) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            write_field(out, line, f);
        }
    }
    out.extend_from_slice(b"}\n");
}

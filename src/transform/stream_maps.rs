//! Singer SDK stream maps, run natively: aliasing, filtering, splitting, dropping and computing
//! properties with Python expressions, and flattening.
//!
//! Behaviour follows the SDK's `PluginMapper` in tap mode (what an SDK tap with
//! `stream_maps` writes): a removed stream emits nothing at all, SCHEMA messages are rewritten
//! with types inferred from the expressions, and STATE never comes here.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use serde_json::{Map, Value, json};

use super::expr::{Context, EvalError, Expr, Faker};
use super::{Keeps, Lineage, LinesMapped, Transform, TransformError};
use crate::singer::Message;
use crate::singer::message::{RecordMessage, SchemaMessage};
use crate::singer::raw::{Field, RecordLine};

const ELSE: &str = "__else__";
const FILTER: &str = "__filter__";
const SOURCE: &str = "__source__";
const ALIAS: &str = "__alias__";
const KEY_PROPERTIES: &str = "__key_properties__";
const NULL_STRING: &str = "__NULL__";
const SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";
/// Flattened names at or above this length are abbreviated, as the SDK does.
const MAX_KEY_LENGTH: usize = 255;

/// Flattening options (`flattening_enabled`, `flattening_max_depth`, `flattening_separator`).
#[derive(Debug, Clone, PartialEq)]
pub struct Flattening {
    /// How many levels of nested objects become columns.
    pub max_depth: usize,
    /// What joins parent and child names (`__` by default).
    pub separator: String,
}

/// What one `stream_maps` entry does to the streams it matches.
#[derive(Debug)]
enum EntryDef {
    Remove,
    Custom(Arc<CustomMap>),
}

#[derive(Debug)]
struct Entry {
    key: String,
    source: String,
    glob: Option<GlobMatcher>,
    alias: Option<String>,
    primary: bool,
    def: EntryDef,
}

impl Entry {
    fn matches(&self, stream: &str) -> bool {
        self.source == stream || self.glob.as_ref().is_some_and(|g| g.is_match(stream))
    }
}

/// A stream map with property expressions.
#[derive(Debug)]
struct CustomMap {
    filter: Option<Expr>,
    key_properties: Option<Vec<String>>,
    include_by_default: bool,
    props: Vec<(String, Option<Expr>)>,
    /// The properties the filter and the computed expressions read (a bare property name
    /// copies its value and reads nothing); `None` when one reads the whole record.
    reads: Option<Vec<String>>,
    /// Each property name of `props` as a JSON string, for writing record lines.
    prop_keys: Vec<Vec<u8>>,
    /// Whether the filter or an expression calls `fake` (see [`Expr::uses_fake`]).
    uses_fake: bool,
}

impl CustomMap {
    fn new(
        filter: Option<Expr>,
        key_properties: Option<Vec<String>>,
        include_by_default: bool,
        props: Vec<(String, Option<Expr>)>,
    ) -> CustomMap {
        let mut reads = filter
            .as_ref()
            .map_or(Some(Vec::new()), |f| f.record_names(None));
        for (prop, expr) in &props {
            let Some(expr) = expr else { continue };
            if expr.as_property().is_some() {
                continue;
            }
            match (expr.record_names(Some(prop)), reads.as_mut()) {
                (Some(names), Some(all)) => {
                    for n in names {
                        if !all.contains(&n) {
                            all.push(n);
                        }
                    }
                }
                _ => reads = None,
            }
        }
        let prop_keys = props
            .iter()
            .map(|(p, _)| serde_json::to_vec(p).expect("a string always serialises"))
            .collect();
        let uses_fake = filter.iter().any(Expr::uses_fake)
            || props
                .iter()
                .filter_map(|(_, e)| e.as_ref())
                .any(Expr::uses_fake);
        CustomMap {
            filter,
            key_properties,
            include_by_default,
            props,
            reads,
            prop_keys,
            uses_fake,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Remove,
    Same,
    Custom(Arc<CustomMap>),
}

/// One output of a registered input stream.
#[derive(Debug)]
struct Mapper {
    alias: String,
    /// `alias` as a JSON string.
    alias_json: Vec<u8>,
    kind: Kind,
    schema: Value,
    flattened: bool,
}

#[derive(Debug, Default)]
struct Registered {
    mappers: Vec<Mapper>,
    records: u64,
    /// When records of the stream can be mapped from their line (see
    /// [`Transform::apply_record_line`]): the properties the expressions read.
    line_reads: Option<Vec<String>>,
    /// Whether records must be mapped one at a time, in order (`fake` is used); otherwise
    /// runs of record lines are mapped on several threads.
    in_order: bool,
}

/// Where a property of an output record comes from, in [`StreamMaps::apply_record_line`].
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The value of the input property at this index, as it came.
    Field(usize),
    /// The computed value at this index.
    Value(usize),
}

/// The name of an output record property.
#[derive(Debug, Clone, Copy)]
enum Name {
    /// The key of the input property at this index.
    Field(usize),
    /// The map's property at this index.
    Prop(usize),
}

/// Buffers of the line path, kept from record to record.
#[derive(Debug, Default)]
struct LineScratch {
    line: RecordLine,
    /// The properties the expressions read, as values (other names may linger from earlier
    /// records: no expression reads them).
    partial: Map<String, Value>,
    sources: Vec<Option<Source>>,
    values: Vec<Value>,
    slots: Vec<(Name, Source)>,
}

/// The stream-maps transform.
pub struct StreamMaps {
    entries: Vec<Entry>,
    else_remove: bool,
    flattening: Option<Flattening>,
    map_config: Value,
    faker: RefCell<Faker>,
    streams: HashMap<String, Registered>,
    scratch: LineScratch,
    /// The other threads' buffers for runs of record lines.
    parts: Vec<Part>,
}

fn config_error(message: impl Into<String>) -> TransformError {
    TransformError {
        message: message.into(),
        hint: Some("see the Singer SDK stream maps reference for the accepted syntax".into()),
    }
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NULL_STRING)
}

impl StreamMaps {
    /// Where the maps use what the Singer SDK's mapper refuses (see [`Expr::beyond_sdk`]):
    /// `(stream map, property or `__filter__`, function)` for each use.
    pub fn beyond_sdk(&self) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        for entry in &self.entries {
            let EntryDef::Custom(map) = &entry.def else {
                continue;
            };
            let exprs = map.filter.iter().map(|f| ("__filter__", f)).chain(
                map.props
                    .iter()
                    .filter_map(|(p, e)| e.as_ref().map(|e| (p.as_str(), e))),
            );
            for (prop, expr) in exprs {
                for name in expr.beyond_sdk() {
                    out.push((entry.key.clone(), prop.to_owned(), name));
                }
            }
        }
        out
    }

    /// Builds the transform from a plugin configuration holding `stream_maps`,
    /// `stream_map_config`, `faker_config`, `flattening_enabled`, `flattening_max_depth` and
    /// `flattening_separator` (the keys of an SDK tap's or mapper's config).
    ///
    /// Every expression is compiled here; one the language cannot run is an error naming the
    /// stream map, the property and the expression.
    pub fn from_config(config: &Value) -> Result<StreamMaps, TransformError> {
        let empty = Map::new();
        let maps = match config.get("stream_maps") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(config_error("`stream_maps` must be a mapping")),
        };
        let map_config = match config.get("stream_map_config") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(config_error("`stream_map_config` must be a mapping")),
        };
        let seed = match config.get("faker_config").and_then(|f| f.get("seed")) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().unwrap_or_else(|| {
                n.as_i64()
                    .map_or_else(|| hash_seed(n.as_str()), |i| i as u64)
            })),
            Some(Value::String(s)) => Some(hash_seed(s)),
            Some(other) => Some(hash_seed(&other.to_string())),
        };
        let flattening = flattening_options(config)?;

        let mut else_remove = false;
        let mut entries = Vec::new();
        for (key, def) in maps {
            if key == ELSE {
                if is_null(def) {
                    else_remove = true;
                    continue;
                }
                return Err(config_error(format!(
                    "`stream_maps.__else__` must be null or `__NULL__`, not {def}"
                )));
            }
            if key.starts_with("__") {
                return Err(config_error(format!(
                    "`stream_maps.{key}` is not an option the SDK knows"
                )));
            }
            entries.push(parse_entry(key, def)?);
        }
        Ok(StreamMaps {
            entries,
            else_remove,
            flattening,
            map_config,
            faker: RefCell::new(Faker::new(seed)),
            streams: HashMap::new(),
            scratch: LineScratch::default(),
            parts: Vec::new(),
        })
    }

    /// The output streams of input stream `stream`, with what each does to it.
    fn outputs(&self, stream: &str) -> Result<Vec<(String, Kind)>, TransformError> {
        let default_kind = if self.else_remove {
            Kind::Remove
        } else {
            Kind::Same
        };
        let mut mappers = vec![(stream.to_owned(), default_kind)];
        for entry in &self.entries {
            if !entry.matches(stream) {
                continue;
            }
            let mut alias = match &entry.alias {
                Some(expr) => eval_alias(expr, stream).map_err(|e| TransformError {
                    message: format!(
                        "stream map `{}`: `__alias__` expression `{expr}` failed: {e}",
                        entry.key
                    ),
                    hint: None,
                })?,
                None => entry.key.clone(),
            };
            if entry.source != stream && entry.alias.is_none() && entry.primary {
                // A wildcard entry without an alias keeps each stream's own name.
                alias = stream.to_owned();
            }
            let kind = match &entry.def {
                EntryDef::Remove => Kind::Remove,
                EntryDef::Custom(c) => Kind::Custom(Arc::clone(c)),
            };
            if entry.primary {
                mappers[0] = (alias, kind);
            } else {
                mappers.push((alias, kind));
            }
        }
        Ok(mappers)
    }

    fn register(&mut self, msg: &SchemaMessage) -> Result<(), TransformError> {
        let stream = msg.stream.as_str();
        let mappers = self.outputs(stream)?;
        let mut built = Vec::with_capacity(mappers.len());
        for (alias, kind) in mappers {
            let schema = match &kind {
                Kind::Remove => Value::Null,
                Kind::Same => msg.schema.clone(),
                Kind::Custom(c) => custom_schema(c, msg, &alias)?,
            };
            let flattened = self.flattening.is_some() && !matches!(kind, Kind::Remove);
            let schema = match &self.flattening {
                Some(f) if flattened => flatten_schema(&schema, f).map_err(|e| TransformError {
                    message: format!("flattening the schema of stream `{alias}`: {e}"),
                    hint: Some(
                        "lower `flattening_max_depth` or rename the clashing properties".into(),
                    ),
                })?,
                _ => schema,
            };
            built.push(Mapper {
                alias_json: serde_json::to_vec(&alias).expect("a string always serialises"),
                alias,
                kind,
                schema,
                flattened,
            });
        }
        let records = self.streams.get(stream).map_or(0, |r| r.records);
        let mut line_reads = Some(Vec::new());
        for m in &built {
            match (&m.kind, line_reads.as_mut()) {
                _ if m.flattened => line_reads = None,
                (Kind::Custom(c), Some(all)) => match &c.reads {
                    Some(names) => {
                        for n in names {
                            if !all.contains(n) {
                                all.push(n.clone());
                            }
                        }
                    }
                    None => line_reads = None,
                },
                _ => {}
            }
        }
        let in_order = built
            .iter()
            .any(|m| matches!(&m.kind, Kind::Custom(c) if c.uses_fake));
        self.streams.insert(
            stream.to_owned(),
            Registered {
                mappers: built,
                records,
                line_reads,
                in_order,
            },
        );
        Ok(())
    }

    fn map_record(
        &mut self,
        msg: RecordMessage,
        out: &mut Vec<Message>,
    ) -> Result<(), TransformError> {
        let Some(reg) = self.streams.get_mut(&msg.stream) else {
            return Err(TransformError {
                message: format!(
                    "a RECORD of stream `{}` arrived before its SCHEMA message",
                    msg.stream
                ),
                hint: Some("Singer requires a SCHEMA message before a stream's records".into()),
            });
        };
        reg.records += 1;
        let number = reg.records;
        let live = reg
            .mappers
            .iter()
            .filter(|m| !matches!(m.kind, Kind::Remove))
            .count();
        let mut seen = 0;
        let mut msg = Some(msg);
        for mapper in &reg.mappers {
            if matches!(mapper.kind, Kind::Remove) {
                continue;
            }
            seen += 1;
            let last = seen == live;
            let source = msg.as_ref().expect("kept until the last mapper");
            let record = match &mapper.kind {
                Kind::Remove => unreachable!("skipped above"),
                Kind::Same => None,
                Kind::Custom(c) => {
                    let ctx = Context {
                        record: &source.record,
                        property: None,
                        config: &self.map_config,
                        stream_name: &mapper.alias,
                        original_stream_name: &source.stream,
                        fake: Some(&self.faker),
                    };
                    if let Some(f) = &c.filter {
                        let keep = f
                            .eval(&ctx)
                            .map_err(|e| eval_error(&source.stream, number, FILTER, f, &e))?
                            .truthy();
                        if !keep {
                            continue;
                        }
                    }
                    Some(compute(c, &ctx, number)?)
                }
            };
            let mut rec = if last {
                msg.take().expect("kept until the last mapper")
            } else {
                source.clone()
            };
            if let (Some(values), Kind::Custom(c)) = (record, &mapper.kind) {
                apply(c, &mut rec.record, values);
            }
            if let (true, Some(f)) = (mapper.flattened, &self.flattening) {
                rec.record = flatten_record(std::mem::take(&mut rec.record), f);
            }
            rec.stream.clone_from(&mapper.alias);
            out.push(Message::Record(rec));
        }
        Ok(())
    }
}

/// Runs shorter than this many lines per thread are mapped on the calling thread alone.
const MIN_LINES_PER_THREAD: usize = 64;

/// The line path: a RECORD mapped from its line, writing what [`StreamMaps::map_record`]
/// followed by [`Message::write_line`] writes, without building the record.
impl StreamMaps {
    fn map_record_line(
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
    fn map_record_lines(
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
struct Part {
    scratch: LineScratch,
    out: Vec<u8>,
    result: Option<LinesMapped>,
}

/// What maps the record lines of one stream; shared by the threads of a run.
struct LineMap<'a> {
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
    fn map_all(
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
    fn map(
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
fn read_field(line: &[u8], f: &Field) -> Option<Value> {
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

fn write_field(out: &mut Vec<u8>, line: &[u8], f: &Field) {
    match &f.parsed {
        None => out.extend_from_slice(&line[f.value.clone()]),
        Some(v) => serde_json::to_writer(&mut *out, v).expect("a JSON value always serialises"),
    }
}

/// Writes one RECORD line (and its newline) as [`Message::write_line`] would: `type`,
/// `stream`, `record`, `version`, `time_extracted`, then the other keys of the input line.
fn write_line(
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

fn hash_seed(text: &str) -> u64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn flattening_options(config: &Value) -> Result<Option<Flattening>, TransformError> {
    let enabled = match config.get("flattening_enabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "1" | "yes" | "on"),
        Some(_) => return Err(config_error("`flattening_enabled` must be true or false")),
    };
    if !enabled {
        return Ok(None);
    }
    let depth = match config.get("flattening_max_depth") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        config_error(
            "`flattening_max_depth` must be a non-negative integer when flattening is enabled",
        )
    })?;
    if depth == 0 {
        // The SDK treats depth 0 as flattening off.
        return Ok(None);
    }
    let separator = match config.get("flattening_separator") {
        None | Some(Value::Null) => "__".to_owned(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(config_error(
                "`flattening_separator` must be a non-empty string",
            ));
        }
    };
    Ok(Some(Flattening {
        max_depth: usize::try_from(depth).unwrap_or(usize::MAX),
        separator,
    }))
}

fn compile(stream: &str, property: &str, source: &str) -> Result<Expr, TransformError> {
    Expr::compile(source).map_err(|e| TransformError {
        message: format!(
            "stream map `{stream}`, property `{property}`: expression `{source}` cannot run: {e}"
        ),
        hint: Some(
            "expressions use Python syntax over the record's properties, `record`, `config`, \
             `md5()`, `datetime`, `json` and the other built-ins of Singer SDK stream maps"
                .into(),
        ),
    })
}

/// Which input properties a custom map's output is made from: the properties it passes on by
/// name, and those its filter and expressions read.
fn custom_lineage(c: &CustomMap, stream: String) -> Lineage {
    let named: BTreeSet<String> = c.props.iter().map(|(p, _)| p.clone()).collect();
    let mut reads = c
        .filter
        .as_ref()
        .map_or(Some(Vec::new()), |f| f.record_names(None));
    for (prop, expr) in &c.props {
        let Some(expr) = expr else { continue };
        match (expr.record_names(Some(prop)), reads.as_mut()) {
            (Some(names), Some(all)) => all.extend(names),
            _ => reads = None,
        }
    }
    Lineage {
        stream,
        keeps: if c.include_by_default {
            Keeps::AllBut(named)
        } else {
            Keeps::Nothing
        },
        reads: reads.map(|r| r.into_iter().collect()),
    }
}

fn parse_entry(key: &str, def: &Value) -> Result<Entry, TransformError> {
    let mut source = key.to_owned();
    let mut alias = None;
    let mut primary = true;
    let def = match def {
        v if is_null(v) => EntryDef::Remove,
        Value::Object(obj) => {
            let mut filter = None;
            let mut key_properties = None;
            let mut include_by_default = true;
            let mut props = Vec::new();
            for (prop, value) in obj {
                match prop.as_str() {
                    SOURCE => {
                        let Some(s) = value.as_str() else {
                            return Err(config_error(format!(
                                "`{key}.__source__` must be a stream name"
                            )));
                        };
                        source = s.to_owned();
                        primary = false;
                    }
                    ALIAS => {
                        let Some(s) = value.as_str() else {
                            return Err(config_error(format!(
                                "`{key}.__alias__` must be a string"
                            )));
                        };
                        alias = Some(s.to_owned());
                    }
                    FILTER => {
                        let Some(s) = value.as_str() else {
                            return Err(config_error(format!(
                                "`{key}.__filter__` must be an expression string"
                            )));
                        };
                        filter = Some(compile(key, FILTER, s)?);
                    }
                    KEY_PROPERTIES => {
                        key_properties = Some(match value {
                            Value::Null => Vec::new(),
                            Value::Array(items) => items
                                .iter()
                                .map(|i| i.as_str().map(str::to_owned))
                                .collect::<Option<Vec<_>>>()
                                .ok_or_else(|| {
                                    config_error(format!(
                                        "`{key}.__key_properties__` must list property names"
                                    ))
                                })?,
                            _ => {
                                return Err(config_error(format!(
                                    "`{key}.__key_properties__` must be a list or null"
                                )));
                            }
                        });
                    }
                    ELSE => {
                        if is_null(value) {
                            include_by_default = false;
                        } else {
                            return Err(config_error(format!(
                                "`{key}.__else__` must be null or `__NULL__`, not {value}"
                            )));
                        }
                    }
                    _ => match value {
                        v if is_null(v) => props.push((prop.clone(), None)),
                        Value::String(s) => {
                            props.push((prop.clone(), Some(compile(key, prop, s)?)))
                        }
                        other => {
                            return Err(config_error(format!(
                                "stream map `{key}`, property `{prop}`: expected an expression string or null, found {other}"
                            )));
                        }
                    },
                }
            }
            if let Some(removed) = key_properties
                .as_ref()
                .and_then(|kp| props.iter().find(|(p, e)| e.is_none() && kp.contains(p)))
            {
                return Err(config_error(format!(
                    "stream map `{key}` removes key property `{}`; set `__key_properties__` to change the key",
                    removed.0
                )));
            }
            EntryDef::Custom(Arc::new(CustomMap::new(
                filter,
                key_properties,
                include_by_default,
                props,
            )))
        }
        other => {
            return Err(config_error(format!(
                "stream map `{key}` must be a mapping, null or `__NULL__`, not {other}"
            )));
        }
    };
    let glob = if source.contains(['*', '?', '[']) {
        Some(
            Glob::new(&source)
                .map_err(|e| {
                    config_error(format!("stream map `{key}`: bad pattern `{source}`: {e}"))
                })?
                .compile_matcher(),
        )
    } else {
        None
    };
    Ok(Entry {
        key: key.to_owned(),
        source,
        glob,
        alias,
        primary,
        def,
    })
}

/// `__alias__` is an expression over `__stream_name__`; a name it cannot resolve (or text that
/// is not an expression) means the literal string, as in the SDK.
fn eval_alias(alias: &str, stream: &str) -> Result<String, EvalError> {
    let Ok(expr) = Expr::compile(alias) else {
        return Ok(alias.to_owned());
    };
    let record = Map::new();
    let config = Value::Null;
    let ctx = Context {
        record: &record,
        property: None,
        config: &config,
        stream_name: stream,
        original_stream_name: stream,
        fake: None,
    };
    match expr.eval(&ctx) {
        Ok(v) => match v.to_json()? {
            Value::String(s) => Ok(s),
            other => Ok(other.to_string()),
        },
        Err(EvalError::NameNotDefined(_)) => Ok(alias.to_owned()),
        Err(e) => Err(e),
    }
}

fn eval_error(
    stream: &str,
    number: u64,
    property: &str,
    expr: &Expr,
    e: &EvalError,
) -> TransformError {
    let hint = match e {
        EvalError::NameNotDefined(_) => Some(
            "a bare name must be a property present in every record; use `record.get('name')` \
             for optional properties"
                .to_owned(),
        ),
        EvalError::Limit(_) => {
            Some("simplify the expression; limits keep a runaway map from hanging the run".into())
        }
        EvalError::Failed(_) => None,
    };
    TransformError {
        message: format!(
            "record {number} of stream `{stream}`: stream map property `{property}` expression `{}` failed: {e}",
            expr.source()
        ),
        hint,
    }
}

/// Evaluates every property expression against the unchanged record.
fn compute(
    c: &CustomMap,
    ctx: &Context<'_>,
    number: u64,
) -> Result<Vec<Option<Value>>, TransformError> {
    let mut values = Vec::with_capacity(c.props.len());
    for (prop, expr) in &c.props {
        let Some(expr) = expr else {
            values.push(None);
            continue;
        };
        let value = if let Some(p) = expr.as_property() {
            ctx.record
                .get(p)
                .cloned()
                .ok_or_else(|| EvalError::NameNotDefined(p.to_owned()))
        } else {
            let pctx = Context {
                property: Some(prop),
                ..*ctx
            };
            expr.eval_json(&pctx)
        }
        .map_err(|e| eval_error(ctx.original_stream_name, number, prop, expr, &e))?;
        values.push(Some(value));
    }
    Ok(values)
}

fn apply(c: &CustomMap, record: &mut Map<String, Value>, values: Vec<Option<Value>>) {
    if !c.include_by_default {
        let mut kept = Map::new();
        for k in c.key_properties.iter().flatten() {
            if let Some(v) = record.shift_remove(k) {
                kept.insert(k.clone(), v);
            }
        }
        *record = kept;
    }
    for ((prop, _), value) in c.props.iter().zip(values) {
        match value {
            None => {
                record.shift_remove(prop);
            }
            Some(v) => {
                record.insert(prop.clone(), v);
            }
        }
    }
}

fn nullable(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        match obj.get_mut("type") {
            Some(Value::String(t)) if t != "null" => {
                let t = std::mem::take(t);
                obj.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
                types.push("null".into());
            }
            _ => {}
        }
    }
    schema
}

/// The SDK's type inference for a property expression.
fn infer_type(source: &str, existing: Option<&Value>, raw: &Value) -> Value {
    let src = source.trim();
    if src == "record" {
        return nullable(raw.clone());
    }
    let simple = |t: &str| json!({"type": [t, "null"]});
    if src.starts_with("float(") {
        return simple("number");
    }
    if src.starts_with("int(") {
        return simple("integer");
    }
    if src.starts_with("str(") || src.starts_with("json.dumps(") {
        return simple("string");
    }
    if src.starts_with("bool(") {
        return simple("boolean");
    }
    if src.ends_with(".date()")
        || (src.starts_with("datetime.date") && !src.starts_with("datetime.datetime"))
    {
        return json!({"type": ["string", "null"], "format": "date"});
    }
    if src.starts_with("datetime.datetime") {
        return json!({"type": ["string", "null"], "format": "date-time"});
    }
    if src.len() >= 2
        && ((src.starts_with('\'') && src.ends_with('\''))
            || (src.starts_with('"') && src.ends_with('"')))
    {
        return simple("string");
    }
    match existing {
        Some(s) => nullable(s.clone()),
        None => simple("string"),
    }
}

fn custom_schema(c: &CustomMap, msg: &SchemaMessage, alias: &str) -> Result<Value, TransformError> {
    let raw = &msg.schema;
    let raw_props = raw.get("properties").and_then(Value::as_object);
    let key_properties = c.key_properties.as_ref().unwrap_or(&msg.key_properties);
    let mut schema = if c.include_by_default {
        raw.clone()
    } else {
        let mut props = Map::new();
        for k in key_properties {
            if let Some(s) = raw_props.and_then(|p| p.get(k)) {
                props.insert(k.clone(), s.clone());
            }
        }
        json!({"type": "object", "properties": props, "$schema": SCHEMA_DIALECT})
    };
    let Some(obj) = schema.as_object_mut() else {
        return Err(TransformError {
            message: format!("the schema of stream `{}` is not a JSON object", msg.stream),
            hint: None,
        });
    };
    if !obj.get("properties").is_some_and(Value::is_object) {
        obj.insert("properties".into(), Value::Object(Map::new()));
    }
    let mut removed = Vec::new();
    {
        let props = obj
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .expect("inserted above");
        for (prop, expr) in &c.props {
            match expr {
                None => {
                    if key_properties.contains(prop) {
                        return Err(TransformError {
                            message: format!(
                                "stream map for `{alias}` removes `{prop}`, a key property of stream `{}`",
                                msg.stream
                            ),
                            hint: Some(
                                "set `__key_properties__` to a new list (or null) to change the key".into(),
                            ),
                        });
                    }
                    props.shift_remove(prop);
                    removed.push(prop.as_str());
                }
                Some(e) => {
                    let existing = props
                        .get(prop)
                        .or_else(|| raw_props.and_then(|p| p.get(e.source().trim())));
                    let t = infer_type(e.source(), existing, raw);
                    props.insert(prop.clone(), t);
                }
            }
        }
        for k in key_properties {
            if !props.contains_key(k) {
                return Err(TransformError {
                    message: format!(
                        "stream map for `{alias}`: key property `{k}` is not a property after mapping"
                    ),
                    hint: Some(
                        "list in `__key_properties__` only properties the mapped stream has".into(),
                    ),
                });
            }
        }
    }
    if let Some(Value::Array(req)) = obj.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|r| removed.contains(&r)));
    }
    Ok(schema)
}

fn custom_key_properties(kind: &Kind, original: &[String]) -> Vec<String> {
    match kind {
        Kind::Custom(c) => c
            .key_properties
            .clone()
            .unwrap_or_else(|| original.to_vec()),
        _ => original.to_vec(),
    }
}

/// The SDK's `flatten_key`: joined names, abbreviated from the left while 255 characters or more.
fn flatten_key(key: &str, parents: &[String], sep: &str) -> String {
    let mut parts: Vec<String> = parents.iter().cloned().chain([key.to_owned()]).collect();
    let mut i = 0;
    while parts.join(sep).len() >= MAX_KEY_LENGTH && i < parts.len() {
        let camel = camelize(&parts[i]);
        let reduced: String = camel.chars().filter(|c| !c.is_ascii_lowercase()).collect();
        parts[i] = if reduced.chars().count() > 1 {
            reduced
        } else {
            parts[i].chars().take(3).collect()
        }
        .to_lowercase();
        i += 1;
    }
    parts.join(sep)
}

/// `inflection.camelize`: upper-case the first letter and each letter after `_`.
fn camelize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = true;
    for c in s.chars() {
        if c == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = false;
    }
    out
}

fn has_type(schema: &Value, t: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x == t),
        _ => false,
    }
}

fn flatten_schema(schema: &Value, f: &Flattening) -> Result<Value, String> {
    let mut out = schema.clone();
    let Some(obj) = out.as_object_mut() else {
        return Ok(out);
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(out);
    };
    let mut flat = Map::new();
    flatten_schema_node(props, &[], 0, f, &mut flat)?;
    obj.insert("properties".into(), Value::Object(flat));
    Ok(out)
}

fn flatten_schema_node(
    props: &Map<String, Value>,
    parents: &[String],
    level: usize,
    f: &Flattening,
    out: &mut Map<String, Value>,
) -> Result<(), String> {
    for (k, v) in props {
        let new_key = flatten_key(k, parents, &f.separator);
        let nested = v.get("properties").and_then(Value::as_object);
        let value = if let (true, Some(children), true) =
            (has_type(v, "object"), nested, level < f.max_depth)
        {
            let mut p = parents.to_vec();
            p.push(k.clone());
            flatten_schema_node(children, &p, level + 1, f, out)?;
            continue;
        } else if has_type(v, "object") || has_type(v, "array") {
            // Deeper objects and arrays become JSON text.
            let t = match v.get("type") {
                Some(Value::Array(types)) => {
                    let mut ts: Vec<Value> = Vec::new();
                    for t in types {
                        let t = if t == "object" || t == "array" {
                            json!("string")
                        } else {
                            t.clone()
                        };
                        if !ts.contains(&t) {
                            ts.push(t);
                        }
                    }
                    Value::Array(ts)
                }
                _ => json!("string"),
            };
            json!({ "type": t })
        } else {
            v.clone()
        };
        if out.insert(new_key.clone(), value).is_some() {
            return Err(format!("duplicate column name `{new_key}`"));
        }
    }
    Ok(())
}

fn flatten_record(record: Map<String, Value>, f: &Flattening) -> Map<String, Value> {
    let mut out = Map::with_capacity(record.len());
    flatten_record_node(record, &[], 0, f, &mut out);
    out
}

fn flatten_record_node(
    node: Map<String, Value>,
    parents: &[String],
    level: usize,
    f: &Flattening,
    out: &mut Map<String, Value>,
) {
    for (k, v) in node {
        let new_key = flatten_key(&k, parents, &f.separator);
        match v {
            Value::Object(children) if level < f.max_depth => {
                let mut p = parents.to_vec();
                p.push(k);
                flatten_record_node(children, &p, level + 1, f, out);
            }
            v @ (Value::Object(_) | Value::Array(_)) => {
                let text = serde_json::to_string(&v).expect("a JSON value always serialises");
                out.insert(new_key, Value::String(text));
            }
            v => {
                out.insert(new_key, v);
            }
        }
    }
}

impl Transform for StreamMaps {
    fn lineage(&self, stream: &str) -> Vec<Lineage> {
        let Ok(outputs) = self.outputs(stream) else {
            // An alias that cannot be computed: the stream keeps everything it had.
            return vec![Lineage {
                reads: None,
                ..Lineage::same(stream)
            }];
        };
        outputs
            .into_iter()
            .filter_map(|(alias, kind)| {
                let mut lineage = match kind {
                    Kind::Remove => return None,
                    Kind::Same => Lineage::same(&alias),
                    Kind::Custom(c) => custom_lineage(&c, alias),
                };
                if self.flattening.is_some() {
                    // Flattened properties take new names: whatever passed on counts as read.
                    lineage.reads = None;
                }
                Some(lineage)
            })
            .collect()
    }

    fn touches(&self, stream: &str) -> bool {
        self.else_remove
            || self.flattening.is_some()
            || self.entries.iter().any(|e| e.matches(stream))
    }

    fn apply_record_line(
        &mut self,
        stream: &str,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TransformError> {
        self.map_record_line(stream, line, out)
    }

    fn maps_record_lines(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|r| r.line_reads.is_some())
    }

    fn apply_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[Range<usize>],
        out: &mut Vec<u8>,
    ) -> LinesMapped {
        self.map_record_lines(stream, buf, lines, out)
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        match message {
            Message::Schema(msg) => {
                self.register(&msg)?;
                let reg = &self.streams[&msg.stream];
                for m in &reg.mappers {
                    if matches!(m.kind, Kind::Remove) {
                        continue;
                    }
                    out.push(Message::Schema(SchemaMessage {
                        stream: m.alias.clone(),
                        schema: m.schema.clone(),
                        key_properties: custom_key_properties(&m.kind, &msg.key_properties),
                        bookmark_properties: msg.bookmark_properties.clone(),
                        extra: msg.extra.clone(),
                    }));
                }
                Ok(())
            }
            Message::Record(rec) => self.map_record(rec, out),
            Message::ActivateVersion(av) => {
                match self.streams.get(&av.stream) {
                    None => out.push(Message::ActivateVersion(av)),
                    Some(reg) => {
                        for m in reg
                            .mappers
                            .iter()
                            .filter(|m| !matches!(m.kind, Kind::Remove))
                        {
                            let mut a = av.clone();
                            a.stream.clone_from(&m.alias);
                            out.push(Message::ActivateVersion(a));
                        }
                    }
                }
                Ok(())
            }
            Message::Batch(batch) => {
                let Some(reg) = self.streams.get(&batch.stream) else {
                    out.push(Message::Batch(batch));
                    return Ok(());
                };
                for m in reg
                    .mappers
                    .iter()
                    .filter(|m| !matches!(m.kind, Kind::Remove))
                {
                    let changes_records = m.flattened
                        || matches!(&m.kind, Kind::Custom(c) if c.filter.is_some() || !c.props.is_empty() || !c.include_by_default);
                    if changes_records {
                        return Err(TransformError {
                            message: format!(
                                "stream `{}` sends BATCH files, which stream maps that change records cannot map",
                                batch.stream
                            ),
                            hint: Some(
                                "turn off batch messages in the tap, or map only by alias".into(),
                            ),
                        });
                    }
                    let mut b = batch.clone();
                    b.stream.clone_from(&m.alias);
                    out.push(Message::Batch(b));
                }
                Ok(())
            }
            other => {
                out.push(other);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: Value, lines: &[&str]) -> Result<Vec<Value>, TransformError> {
        let mut t = StreamMaps::from_config(&config)?;
        let mut out = Vec::new();
        for l in lines {
            let m = Message::parse(l.as_bytes()).unwrap();
            if t.touches(m.stream().unwrap_or_default()) {
                t.apply(m, &mut out)?;
            } else {
                out.push(m);
            }
        }
        Ok(out.iter().map(Message::to_value).collect())
    }

    const SCHEMA: &str = r#"{"type":"SCHEMA","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":["string","null"]}}},"key_properties":["id"]}"#;

    #[test]
    fn bad_expression_is_rejected_naming_stream_property_and_expression() {
        let Err(e) = StreamMaps::from_config(&json!({"stream_maps": {"users": {"x": "email.("}}}))
        else {
            panic!("accepted a broken expression");
        };
        for part in ["`users`", "`x`", "`email.(`"] {
            assert!(e.message.contains(part), "{}", e.message);
        }
    }

    #[test]
    fn fstrings_and_format_build_string_properties_on_both_paths() {
        let config = json!({"stream_maps": {"users": {
            "label": "f'{id:05d}-{email.upper()}'",
            "line": "'{} <{}>'.format(id, email)"}}});
        let out = run(
            config.clone(),
            &[
                SCHEMA,
                r#"{"type":"RECORD","stream":"users","record":{"id":7,"email":"a@x.io"}}"#,
            ],
        )
        .unwrap();
        assert_eq!(
            out[0]["schema"]["properties"]["label"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(out[1]["record"]["label"], json!("00007-A@X.IO"));
        assert_eq!(out[1]["record"]["line"], json!("7 <a@x.io>"));
        let (fast, full) = both_paths(
            &config,
            USERS,
            r#"{"type":"RECORD","stream":"users","record":{"id":7,"email":"a@x.io","status":"x"}}"#,
        )
        .unwrap();
        assert_eq!(fast.expect("the line path maps it").unwrap(), full.unwrap());
    }

    #[test]
    fn untouched_streams_are_not_claimed() {
        let t =
            StreamMaps::from_config(&json!({"stream_maps": {"users": {"x": "1"}, "ord*": null}}))
                .unwrap();
        assert!(t.touches("users"));
        assert!(t.touches("orders"));
        assert!(!t.touches("products"));
    }

    #[test]
    fn removing_a_key_property_is_an_error() {
        let e = StreamMaps::from_config(
            &json!({"stream_maps": {"users": {"id": null, "__key_properties__": ["id"]}}}),
        );
        assert!(e.is_err());
    }

    #[test]
    fn missing_property_names_record_number() {
        let e = run(
            json!({"stream_maps": {"users": {"h": "md5(email)"}}}),
            &[
                SCHEMA,
                r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"a"}}"#,
                r#"{"type":"RECORD","stream":"users","record":{"id":2}}"#,
            ],
        )
        .unwrap_err();
        assert!(
            e.message.contains("record 2 of stream `users`"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("`email` is not defined"),
            "{}",
            e.message
        );
    }

    #[test]
    fn split_stream_keeps_both_outputs_in_order() {
        let out = run(
            json!({"stream_maps": {"copy": {"__source__": "users", "id": "id", "__else__": null}}}),
            &[
                SCHEMA,
                r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"a"}}"#,
            ],
        )
        .unwrap();
        let streams: Vec<_> = out
            .iter()
            .map(|m| format!("{}:{}", m["type"], m["stream"]))
            .collect();
        assert_eq!(
            streams,
            [
                r#""SCHEMA":"users""#,
                r#""SCHEMA":"copy""#,
                r#""RECORD":"users""#,
                r#""RECORD":"copy""#
            ]
        );
        assert_eq!(out[3]["record"], json!({"id": 1}));
    }

    /// The bytes a record became, or the error message.
    type Mapped = Result<Vec<u8>, String>;

    /// Maps `line` (after `schema`) both ways: the line path, and the full parse with `apply`
    /// and `write_line`. Returns (line path result, full path result); `None` for the line
    /// path when it declined.
    fn both_paths(config: &Value, schema: &str, line: &str) -> Option<(Option<Mapped>, Mapped)> {
        let mut fast = StreamMaps::from_config(config).ok()?;
        let mut full = StreamMaps::from_config(config).unwrap();
        let mut sink = Vec::new();
        fast.apply(Message::parse(schema.as_bytes()).unwrap(), &mut sink)
            .ok()?;
        full.apply(Message::parse(schema.as_bytes()).unwrap(), &mut sink)
            .unwrap();
        let env = crate::singer::envelope::scan(line.as_bytes()).ok()?;
        let stream = env.stream.as_deref().unwrap();
        let mut out = Vec::new();
        let line_path = match fast.apply_record_line(stream, line.as_bytes(), &mut out) {
            Ok(true) => Some(Ok(out)),
            Ok(false) => {
                assert!(out.is_empty(), "declined after writing");
                None
            }
            Err(e) => Some(Err(e.message)),
        };
        let full_path = match Message::parse_scanned(line.as_bytes(), env.kind.clone()) {
            Err(e) => Err(format!("parse: {e}")),
            Ok(m) => {
                let mut msgs = Vec::new();
                match full.apply(m, &mut msgs) {
                    Err(e) => Err(e.message),
                    Ok(()) => {
                        let mut bytes = Vec::new();
                        for m in msgs {
                            m.write_line(&mut bytes);
                            bytes.push(b'\n');
                        }
                        Ok(bytes)
                    }
                }
            }
        };
        Some((line_path, full_path))
    }

    const USERS: &str = r#"{"type":"SCHEMA","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"},"status":{"type":"string"},"a":{},"b":{},"c":{}}},"key_properties":["id"]}"#;

    #[test]
    fn the_benchmark_map_takes_the_line_path_and_writes_what_the_full_path_writes() {
        let config = json!({"stream_maps": {"users": {
            "__alias__": "customers", "__filter__": "status == 'active'",
            "contact": "email", "email": null, "note": null, "email_hash": "md5(email)"}}});
        for (line, kept) in [
            (
                r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"u@x.io","status":"active","note":"n","amount":1.50},"time_extracted":"2024-01-01T00:00:00Z"}"#,
                true,
            ),
            (
                r#"{"type": "RECORD", "stream": "users", "record": {"id": 2, "email": "v@x.io", "status": "inactive", "a": [1, 2]}}"#,
                false,
            ),
        ] {
            let (fast, full) = both_paths(&config, USERS, line).unwrap();
            let fast = fast.expect("the line path declined").unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&full.unwrap())
            );
            assert_eq!(!fast.is_empty(), kept, "{}", String::from_utf8_lossy(&fast));
        }
        let (fast, _) = both_paths(
            &config,
            USERS,
            r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"u","status":"active"}}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(fast.unwrap().unwrap()).unwrap(),
            r#"{"type":"RECORD","stream":"customers","record":{"id":1,"status":"active","contact":"u","email_hash":"7b774effe4a349c6dd82ad4f4f21d34c"}}
"#
        );
    }

    #[test]
    fn maps_reading_the_whole_record_or_flattening_take_the_full_path() {
        let line = r#"{"type":"RECORD","stream":"users","record":{"id":1}}"#;
        for config in [
            json!({"stream_maps": {"users": {"x": "record.get('id')"}}}),
            json!({"stream_maps": {"users": {"x": "_['id']"}}}),
            json!({"stream_maps": {"users": {}}, "flattening_enabled": true, "flattening_max_depth": 1}),
        ] {
            let (fast, full) = both_paths(&config, USERS, line).unwrap();
            assert!(fast.is_none(), "{config}");
            assert!(full.is_ok());
        }
    }

    /// Maps `lines` (RECORDs of `users`, after [`USERS`]) one at a time with
    /// `apply_record_line`, stopping as a run stops: the output, the lines mapped, the error.
    fn one_by_one(config: &Value, lines: &[String]) -> (Vec<u8>, usize, Option<String>) {
        let mut maps = StreamMaps::from_config(config).unwrap();
        maps.apply(Message::parse(USERS.as_bytes()).unwrap(), &mut Vec::new())
            .unwrap();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let mark = out.len();
            match maps.apply_record_line("users", line.as_bytes(), &mut out) {
                Ok(true) => {}
                Ok(false) => {
                    out.truncate(mark);
                    return (out, i, None);
                }
                Err(e) => {
                    out.truncate(mark);
                    return (out, i, Some(e.message));
                }
            }
        }
        (out, lines.len(), None)
    }

    /// Maps `lines` as one run with `apply_record_lines` in a pool of `threads` threads.
    fn as_run(
        config: &Value,
        lines: &[String],
        threads: usize,
    ) -> (Vec<u8>, usize, Option<String>) {
        let mut maps = StreamMaps::from_config(config).unwrap();
        maps.apply(Message::parse(USERS.as_bytes()).unwrap(), &mut Vec::new())
            .unwrap();
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for line in lines {
            ranges.push(buf.len()..buf.len() + line.len());
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut out = Vec::new();
        let mapped = pool.install(|| maps.apply_record_lines("users", &buf, &ranges, &mut out));
        (out, mapped.done, mapped.error.map(|e| e.message))
    }

    fn users(n: usize, code: impl Fn(usize) -> String) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"RECORD","stream":"users","record":{{"id":{i},"email":"u{i}@x.io","status":"{}","code":{}}}}}"#,
                    if i % 3 == 0 { "active" } else { "gone" },
                    code(i)
                )
            })
            .collect()
    }

    #[test]
    fn a_run_on_several_threads_writes_and_stops_as_one_line_at_a_time_does() {
        let config = json!({"stream_maps": {"users": {
            "__filter__": "status == 'active'", "h": "md5(email)", "n": "int(code) + id"}}});
        // 300 lines in four parts of 75: a failing line (`int('x')`) or one the line path
        // declines (an escaped key) in each part, or none. Every third record passes the filter.
        let escaped = r#"{"type":"RECORD","stream":"users","record":{"\u0069d":3,"status":"active","code":"1"}}"#;
        for (k, declined) in [
            (None, false),
            (Some(0), false),
            (Some(72), false),
            (Some(75), false),
            (Some(159), false),
            (Some(297), false),
            (Some(81), true),
            (Some(230), true),
        ] {
            let mut lines = users(300, |i| {
                if Some(i) == k {
                    "\"x\"".into()
                } else {
                    format!("\"{i}\"")
                }
            });
            if declined {
                lines[k.unwrap()] = escaped.to_owned();
            }
            let expected = one_by_one(&config, &lines);
            assert_eq!(expected.1, k.unwrap_or(300), "where the case stops");
            assert_eq!(expected.2.is_some(), k.is_some() && !declined);
            for threads in [1, 2, 4] {
                let got = as_run(&config, &lines, threads);
                assert_eq!(
                    got.1, expected.1,
                    "lines mapped, {threads} threads, bad line {k:?}"
                );
                assert_eq!(got.2, expected.2, "{threads} threads, bad line {k:?}");
                assert!(
                    got.0 == expected.0,
                    "{threads} threads, bad line {k:?}: other bytes"
                );
            }
        }
        // The error names the record's number in the stream, whichever part it is in.
        let lines = users(300, |i| {
            if i == 201 {
                "\"x\"".into()
            } else {
                "\"1\"".into()
            }
        });
        let (_, done, error) = as_run(&config, &lines, 4);
        assert_eq!(done, 201);
        let error = error.unwrap();
        assert!(error.contains("record 202"), "{error}");
    }

    #[test]
    fn fake_values_stay_in_record_order_on_any_pool() {
        let config = json!({"faker_config": {"seed": 3}, "stream_maps": {"users": {
            "who": "fake.name()"}}});
        let lines = users(300, |i| i.to_string());
        let expected = one_by_one(&config, &lines);
        assert_eq!(expected.1, 300);
        assert!(as_run(&config, &lines, 4) == expected);
    }

    mod line_path {
        use super::*;
        use proptest::prelude::*;

        fn scalar() -> impl Strategy<Value = String> {
            prop_oneof![
                8 => Just("null".to_owned()),
                4 => Just("true".to_owned()),
                16 => (-50i64..50).prop_map(|i| i.to_string()),
                12 => prop::sample::select(vec![
                    "-0", "1.50", "1E5", "2e-3", "0.0", "12345678901234567890123",
                ])
                .prop_map(str::to_owned),
                16 => "[a-zé ]{0,5}".prop_map(|s| format!("\"{s}\"")),
                12 => prop::sample::select(vec![
                    r#""active""#,
                    r#""a\"b\\c\n\t""#,
                    r#""\u00e9\/x""#,
                ])
                .prop_map(str::to_owned),
                // What serde_json refuses.
                1 => prop::sample::select(vec!["01", "1.", r#""\ud800""#, "\"raw\ttab\""])
                    .prop_map(str::to_owned),
            ]
        }

        fn gap() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["", "", "", " "])
        }

        fn value() -> impl Strategy<Value = String> {
            scalar().prop_recursive(3, 12, 3, |inner| {
                prop_oneof![
                    (prop::collection::vec(inner.clone(), 0..3), gap())
                        .prop_map(|(v, g)| format!("[{g}{}]", v.join(&format!(",{g}")))),
                    (
                        prop::collection::vec(
                            (prop::sample::select(vec!["k", "l", "k"]), inner),
                            0..3
                        ),
                        gap()
                    )
                        .prop_map(|(v, g)| {
                            let items: Vec<String> =
                                v.iter().map(|(k, x)| format!("\"{k}\":{g}{x}")).collect();
                            format!("{{{}}}", items.join(","))
                        }),
                ]
            })
        }

        fn record() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                40 => prop::sample::select(vec!["a", "b", "c", "note", "d", "e", "f", "g", "h", "i", "j"]),
                4 => prop::sample::select(vec!["id", "email", "status"]),
                1 => Just("q\\\"k"),
            ];
            (
                -3i64..100,
                "[a-z]{1,4}",
                prop::sample::select(vec!["active", "inactive"]),
                prop::collection::vec((key, value(), gap()), 0..4),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(id, email, status, props, at)| {
                    let mut items: Vec<String> = props
                        .iter()
                        .map(|(k, v, g)| format!("\"{k}\"{g}:{g}{v}"))
                        .collect();
                    // Mostly a record with the usual properties, somewhere among the others.
                    if id >= 0 {
                        let usual =
                            format!(r#""id":{id},"email":"{email}@x.io","status":"{status}""#);
                        items.insert(at.index(items.len() + 1), usual);
                    }
                    format!("{{{}}}", items.join(","))
                })
        }

        fn line() -> impl Strategy<Value = String> {
            (
                record(),
                prop::option::of(value()),
                prop::option::of(value()),
                prop::option::of(value()),
                prop::sample::select(vec!["RECORD", "record"]),
                gap(),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(record, version, time, extra, kind, g, at)| {
                    let mut parts = vec![
                        format!("\"type\":{g}\"{kind}\""),
                        format!("\"stream\":\"users\""),
                    ];
                    if let Some(v) = version {
                        parts.push(format!("\"version\":{v}"));
                    }
                    if let Some(e) = extra {
                        parts.push(format!("\"x-extra\":{e}"));
                    }
                    if let Some(t) = time {
                        parts.push(format!("\"time_extracted\":{t}"));
                    }
                    parts.insert(at.index(parts.len() + 1), format!("\"record\":{record}"));
                    format!("{{{g}{}}}", parts.join(&format!(",{g}")))
                })
        }

        fn mapping() -> impl Strategy<Value = Value> {
            let whole = prop::sample::select(vec![json!("record.get('b')"), json!("_")]);
            let expr = prop::sample::select(vec![
                Value::Null,
                json!("__NULL__"),
                json!("id"),
                json!("email"),
                json!("a"),
                json!("md5(str(email))"),
                json!("str(a) + '!'"),
                json!("self"),
                json!("'const'"),
                json!("int(id) * 2"),
                json!("email"),
                json!("md5(email)"),
                json!("status.upper()"),
            ]);
            let expr = prop_oneof![12 => expr, 1 => whole];
            let props = prop::collection::vec(
                (
                    prop::sample::select(vec!["id", "email", "status", "a", "b", "new"]),
                    expr,
                ),
                0..5,
            );
            let filter = prop::sample::select(vec![
                None,
                None,
                Some("status == 'active'"),
                Some("status != 'active'"),
                Some("len(str(email)) > 8"),
                Some("record.get('c') is None"),
            ]);
            (
                props,
                filter,
                any::<bool>(),
                any::<bool>(),
                prop::option::of(prop::sample::select(vec![
                    json!(["id"]),
                    json!(["status", "id"]),
                    json!(null),
                ])),
                any::<bool>(),
            )
                .prop_map(|(props, filter, alias, else_null, keys, split)| {
                    let mut map = Map::new();
                    for (p, e) in props {
                        map.insert(p.into(), e);
                    }
                    if let Some(f) = filter {
                        map.insert(FILTER.into(), json!(f));
                    }
                    if alias {
                        map.insert(ALIAS.into(), json!("customers"));
                    }
                    if else_null {
                        map.insert(ELSE.into(), Value::Null);
                    }
                    if let Some(k) = keys {
                        map.insert(KEY_PROPERTIES.into(), k);
                    }
                    let mut maps = Map::new();
                    maps.insert("users".into(), Value::Object(map));
                    if split {
                        maps.insert(
                            "copy".into(),
                            json!({"__source__": "users", "status": "str(status) + '?'"}),
                        );
                    }
                    json!({ "stream_maps": maps })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Issue 5: the line path writes byte for byte what the full path writes (or fails
            /// with the same message, or declines a line the full path refuses).
            #[test]
            fn writes_what_the_full_path_writes(config in mapping(), line in line()) {
                let Some((fast, full)) = both_paths(&config, USERS, &line) else {
                    return Ok(());
                };
                match (fast, full) {
                    (None, _) => {}
                    (Some(Ok(fast)), Ok(full)) => prop_assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&full),
                        "{} with {}", line, config
                    ),
                    (Some(Err(fast)), Err(full)) => prop_assert_eq!(fast, full),
                    (fast, full) => prop_assert!(false, "{line} with {config}: line path {fast:?}, full path {full:?}"),
                }
            }
        }
    }

    #[test]
    fn flatten_key_abbreviates_long_names() {
        let long = "a_very_long_parent_name".repeat(12);
        let k = flatten_key("child", std::slice::from_ref(&long), "__");
        assert!(k.len() < MAX_KEY_LENGTH, "{k}");
        assert_eq!(k, format!("avlpn{}__child", "vlpn".repeat(11)));
    }
}

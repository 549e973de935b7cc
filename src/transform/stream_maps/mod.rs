//! Singer SDK stream maps, run natively: aliasing, filtering, splitting, dropping and computing
//! properties with Python expressions, and flattening.
//!
//! Behaviour follows the SDK's `PluginMapper` in tap mode (what an SDK tap with
//! `stream_maps` writes): a removed stream emits nothing at all, SCHEMA messages are rewritten
//! with types inferred from the expressions, and STATE never comes here.
//!
//! Here: the types, the full-message path and the `Transform` impl. Beside it: reading the
//! configuration ([`config`]), the raw-line fast path ([`line_path`]), output schemas
//! ([`schema`]) and flattening ([`flatten`]).

mod config;
mod flatten;
mod line_path;
mod schema;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use globset::GlobMatcher;
use serde_json::{Map, Value};

use super::expr::{Context, EvalError, Expr, Faker};
use super::{Lineage, LinesMapped, Transform, TransformError};
use crate::singer::Message;
use crate::singer::message::{RecordMessage, SchemaMessage};
use crate::singer::raw::RecordLine;

use config::*;
use flatten::*;
use line_path::Part;
use schema::*;

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
    /// Whether schemas are built exactly as the Singer SDK's mapper builds them (the `sdk`
    /// dialect): a map with `__else__: null` then keeps only the key properties it maps.
    sdk_schemas: bool,
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
    /// Builds output schemas as the Singer SDK's mapper does (see the `sdk` dialect).
    pub fn with_sdk_schemas(mut self) -> StreamMaps {
        self.sdk_schemas = true;
        self
    }

    /// What the Singer SDK's mapper does differently with this configuration, checked when it
    /// builds its mappers: `(stream map, what happens under the SDK)` for each case.
    pub fn sdk_config_gaps(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|e| !e.primary && e.alias.is_some())
            .map(|e| {
                (
                    e.key.clone(),
                    "sets both `__source__` and `__alias__`: the Singer SDK reads `__alias__` only without `__source__` and otherwise adds it to every record as a property named `__alias__`".to_owned(),
                )
            })
            .collect()
    }

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
            // A map with `__else__: null` keeps the stream's key properties in its records (as
            // the SDK's mapper does), not only those `__key_properties__` names.
            let kind = match kind {
                Kind::Custom(c)
                    if !c.include_by_default
                        && c.key_properties.is_none()
                        && !msg.key_properties.is_empty() =>
                {
                    Kind::Custom(Arc::new(CustomMap::new(
                        c.filter.clone(),
                        Some(msg.key_properties.clone()),
                        false,
                        c.props.clone(),
                    )))
                }
                other => other,
            };
            let schema = match &kind {
                Kind::Remove => Value::Null,
                Kind::Same => msg.schema.clone(),
                Kind::Custom(c) => custom_schema(c, msg, &alias, self.sdk_schemas)?,
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

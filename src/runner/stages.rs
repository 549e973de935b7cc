//! The steps of a flow between extractor and loader, as they run: native transforms and mapper
//! processes, in order.
//!
//! Stream maps run inside dsm from three places, with the Singer SDK's syntax:
//! - a mapping of a mapper of the `meltano-map-transformer` family (recognised by name,
//!   namespace, executable or `pip_url`): dsm runs the mapping itself instead of spawning Python;
//!   every other mapper still runs as a process;
//! - the `stream_maps` settings of an extractor whose plugin lacks the `stream-maps` capability
//!   (with the capability the tap maps its own output, and its config is left alone);
//! - `annotations.dsm.transforms` of the extractor (`stream_maps`, `field_mask`).
//!
//! Record validation (`annotations.dsm.validation` of the extractor, over the project's
//! `annotations.dsm.defaults.validation`) runs after the extractor's stream maps and dsm's
//! transforms (so the dead-letter file never holds a value a field mask protects, and stream
//! names are those after them), before the mappers. Every expression is compiled here, before
//! any process starts, so a bad one is a configuration error (exit 2).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::spec;
use crate::classification::Derivation;
use crate::error::{Error, Result};
use crate::plugin::{PluginRole, PluginSpec};
use crate::project::annotations::{Dialect, OnError, TransformSpec, Validation};
use crate::project::{PRIVATE_DIR, Plugin, Project};
use crate::singer::Message;
use crate::singer::message::RecordMessage;
use crate::store::RunArtifact;
use crate::transform::{
    FieldMask, Policy, StreamMaps, Transform, TransformError, Validate, ValidationSettings,
};

/// The config keys of the SDK's stream maps (a tap's or a mapper's).
pub const STREAM_MAP_KEYS: [&str; 6] = [
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_separator",
];

/// Folder of the per-run dead-letter files, under the project's private folder (the name
/// `registry::retention` prunes by run id).
pub const QUARANTINE_DIR: &str = "quarantine";

/// Whether a mapper is `meltano-map-transformer` or a compatible variant, whose mappings dsm
/// runs natively.
pub fn is_map_transformer(plugin: &Plugin) -> bool {
    let known = |s: &str| {
        let s = s.to_ascii_lowercase().replace('_', "-");
        s == "meltano-map-transformer" || s == "meltano-map-transform"
    };
    known(&plugin.name)
        || known(&plugin.namespace)
        || known(&plugin.executable)
        || plugin.parent.as_deref().is_some_and(known)
        || plugin
            .pip_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().contains("meltano-map-transform"))
}

/// One step between extractor and loader.
enum Step {
    /// A transform dsm runs, with what it is for the dry-run plan.
    Native {
        label: String,
        transform: Box<dyn Transform>,
    },
    /// A mapper run as a process.
    Process(Box<PluginSpec>),
    /// Where record validation goes.
    Validation(ValidationPolicies),
}

/// The steps of one flow, built and checked before anything starts.
pub struct FlowStages {
    steps: Vec<Step>,
}

impl FlowStages {
    /// The mappers that run as processes, in order.
    pub fn process_specs(&self) -> impl Iterator<Item = &PluginSpec> {
        self.steps.iter().filter_map(|s| match s {
            Step::Process(spec) => Some(spec.as_ref()),
            _ => None,
        })
    }

    /// The mappers that run as processes, to adjust their environment.
    pub fn process_specs_mut(&mut self) -> impl Iterator<Item = &mut PluginSpec> {
        self.steps.iter_mut().filter_map(|s| match s {
            Step::Process(spec) => Some(spec.as_mut()),
            _ => None,
        })
    }

    /// Follows classification labels through the steps; the validation step learns the label
    /// of each stream it sees (for its dead-letter files' names).
    pub fn derive(&mut self, d: &mut Derivation) {
        for s in &mut self.steps {
            match s {
                Step::Native { transform, .. } => d.through(transform.as_ref()),
                Step::Process(spec) => d.through_process(&spec.name),
                Step::Validation(p) => {
                    p.labels = d
                        .labels()
                        .into_iter()
                        .map(|l| (l.stream, l.label))
                        .collect();
                }
            }
        }
    }

    /// The dry-run plan of the steps: a process's command line (by `line`), or what dsm runs.
    pub fn plan(&self, line: impl Fn(&PluginSpec) -> String) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Process(spec) => line(spec),
                Step::Native { label, .. } => format!("(inside dsm) {label}"),
                Step::Validation(p) => format!("(inside dsm) {}", p.describe()),
            })
            .collect()
    }

    /// The pipeline stages of run `run_id`; quarantined records go to
    /// `<project>/.dsm/quarantine/<run id>-<stream>.jsonl`, listed by the returned handle.
    pub fn into_stages(
        self,
        project_root: &Path,
        run_id: &str,
    ) -> (Vec<crate::pipeline::Stage>, Quarantined) {
        use crate::pipeline::Stage;
        let quarantined = Quarantined::default();
        let stages = self
            .steps
            .into_iter()
            .map(|s| match s {
                Step::Native { transform, .. } => Stage::Transform(transform),
                Step::Process(spec) => Stage::Mapper(spec),
                Step::Validation(policies) => Stage::Transform(Box::new(StreamValidation {
                    policies,
                    dir: project_root.join(PRIVATE_DIR).join(QUARANTINE_DIR),
                    run_id: run_id.to_owned(),
                    per_stream: HashMap::new(),
                    files: quarantined.clone(),
                })),
            })
            .collect();
        (stages, quarantined)
    }
}

/// Builds the steps of a flow: the extractor's stream maps when its plugin lacks the capability
/// (taking those keys out of `extractor_spec`'s config), the extractor's
/// `annotations.dsm.transforms`, validation, then each mapper block (natively for the map-transformer
/// family). Nothing is started; a configuration that cannot run is an error (exit 2).
pub fn build(
    specs: &spec::SpecBuilder<'_>,
    extractor: &Plugin,
    extractor_spec: &mut PluginSpec,
    mappers: &[String],
    shared_env: &BTreeMap<String, String>,
) -> Result<FlowStages> {
    let project = specs.project();
    let mut steps = Vec::new();
    let dialect = project
        .dsm()
        .stream_maps
        .map(|o| o.dialect)
        .unwrap_or_default();

    if !extractor.has_capability("stream-maps")
        && let Some(Value::Object(config)) = extractor_spec.config.as_mut()
    {
        let maps = take_map_keys(config);
        if wants_maps(&maps) {
            let what = format!(
                "the `stream_maps` settings of extractor `{}`",
                extractor.name
            );
            let transform = compile_maps(&maps, &what, dialect).map_err(|e| {
                e.hint(format!(
                    "`{}` has no `stream-maps` capability, so dsm applies its stream maps itself",
                    extractor.name
                ))
            })?;
            steps.push(Step::Native {
                label: format!("stream maps of extractor `{}`", extractor.name),
                transform,
            });
        }
    }

    for (i, t) in extractor.annotations.transforms.iter().enumerate() {
        let what = format!(
            "transform {} (`{}`) in `annotations.dsm.transforms` of extractor `{}`",
            i + 1,
            t.kind,
            extractor.name
        );
        steps.push(Step::Native {
            label: format!("{} of extractor `{}`", t.kind, extractor.name),
            transform: annotation_transform(t, &what, dialect)?,
        });
    }

    // After dsm's field masks, so a quarantine file never holds a value a mask protects.
    if let Some(policies) = validation_policies(project, extractor) {
        steps.push(Step::Validation(policies));
    }

    for name in mappers {
        let (mapper, mapping) = super::find_mapper(project, name)?;
        let built = specs.build(mapper, PluginRole::Mapper, mapping, &BTreeMap::new())?;
        if is_map_transformer(mapper) {
            let config = match built.spec.config {
                Some(Value::Object(c)) => c,
                _ => Map::new(),
            };
            let what = match mapping {
                Some(m) => format!("mapping `{}` of mapper `{}`", m.name, mapper.name),
                None => format!("mapper `{}`", mapper.name),
            };
            let transform = compile_maps(&pick_map_keys(&config), &what, dialect)?;
            steps.push(Step::Native {
                label: format!("{what} (stream maps)"),
                transform,
            });
        } else {
            let mut s = built.spec;
            s.name = name.clone();
            s.env.extend(shared_env.clone());
            steps.push(Step::Process(Box::new(s)));
        }
    }
    Ok(FlowStages { steps })
}

/// Compiles every stream map and transform dsm would run for the project, without starting
/// anything: `dsm validate` reports what a run would refuse (an expression nested too deeply,
/// a syntax error, an unknown function). Values given through variables (text) are checked
/// when a run resolves them.
pub fn check_transforms(project: &Project) -> Vec<Error> {
    let mut errors = Vec::new();
    let dialect = project
        .dsm()
        .stream_maps
        .map(|o| o.dialect)
        .unwrap_or_default();
    let written = |config: &Map<String, Value>| {
        let maps = pick_map_keys(config);
        (wants_maps(&maps) && !maps.values().any(Value::is_string)).then_some(maps)
    };
    for extractor in project.plugins_of(crate::project::PluginType::Extractors) {
        if !extractor.has_capability("stream-maps")
            && let Some(maps) = written(&extractor.config)
        {
            let what = format!(
                "the `stream_maps` settings of extractor `{}`",
                extractor.name
            );
            errors.extend(compile_maps(&maps, &what, dialect).err());
        }
        for (i, t) in extractor.annotations.transforms.iter().enumerate() {
            let what = format!(
                "transform {} (`{}`) in `annotations.dsm.transforms` of extractor `{}`",
                i + 1,
                t.kind,
                extractor.name
            );
            errors.extend(annotation_transform(t, &what, dialect).err());
        }
    }
    for mapper in project.plugins_of(crate::project::PluginType::Mappers) {
        if !is_map_transformer(mapper) {
            continue;
        }
        for mapping in &mapper.mappings {
            if let Some(maps) = written(&mapping.config) {
                let what = format!("mapping `{}` of mapper `{}`", mapping.name, mapper.name);
                errors.extend(compile_maps(&maps, &what, dialect).err());
            }
        }
    }
    errors
}

/// Moves the stream-map keys out of a tap's config.
fn take_map_keys(config: &mut Map<String, Value>) -> Map<String, Value> {
    STREAM_MAP_KEYS
        .iter()
        .filter_map(|k| config.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// The stream-map keys of a mapper's config.
fn pick_map_keys(config: &Map<String, Value>) -> Map<String, Value> {
    STREAM_MAP_KEYS
        .iter()
        .filter_map(|k| config.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

/// Whether a config asks for any mapping at all (a tap without maps pays nothing).
fn wants_maps(config: &Map<String, Value>) -> bool {
    let maps = match config.get("stream_maps") {
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::String(s)) => !s.trim().is_empty() && s.trim() != "{}",
        _ => false,
    };
    let flattening = match config.get("flattening_enabled") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "1" | "yes" | "on"),
        _ => false,
    };
    maps || flattening
}

/// Compiles stream maps; an error names `what` and is a configuration error (exit 2).
fn compile_maps(
    config: &Map<String, Value>,
    what: &str,
    dialect: Dialect,
) -> Result<Box<dyn Transform>> {
    let mut config = config.clone();
    // Values from environment variables arrive as JSON text.
    for key in ["stream_maps", "stream_map_config", "faker_config"] {
        if let Some(Value::String(text)) = config.get(key) {
            let parsed: Value = serde_json::from_str(text)
                .map_err(|e| Error::config(format!("{what}: `{key}` is not a JSON object: {e}")))?;
            config.insert(key.to_owned(), parsed);
        }
    }
    let maps = StreamMaps::from_config(&Value::Object(config))
        .map_err(|e| transform_config_error(e, what))?;
    if dialect == Dialect::Sdk
        && let Some((map, what_happens)) = maps.sdk_config_gaps().into_iter().next()
    {
        return Err(Error::config(format!(
            "{what}: stream map `{map}` {what_happens}: `meltano run` would not do what dsm does"
        ))
        .hint(format!("remove `__alias__` from `{map}`: the map's own name (`{map}`) is the stream it writes"))
        .hint("or make the project dsm-only on purpose: `annotations: {dsm: {stream_maps: {dialect: extended}}}` at the top of meltano.yml"));
    }
    if dialect == Dialect::Sdk
        && let Some((map, prop, name)) = maps.beyond_sdk().into_iter().next()
    {
        return Err(Error::config(format!(
            "{what}: stream map `{map}`, property `{prop}` uses `{name}`, which the Singer SDK's stream maps do not have: `meltano run` would fail on it"
        ))
        .hint("rewrite the expression with what the SDK has (`int`, `float`, `str`, `bool`, `md5`, `sha256`, `datetime`, `json`, f-strings, string methods other than `format`)")
        .hint("or make the project dsm-only on purpose: `annotations: {dsm: {stream_maps: {dialect: extended}}}` at the top of meltano.yml"));
    }
    Ok(Box::new(match dialect {
        Dialect::Sdk => maps.with_sdk_schemas(),
        Dialect::Extended => maps,
    }))
}

fn transform_config_error(e: TransformError, what: &str) -> Error {
    let mut err = Error::config(format!("{what}: {}", e.message));
    if let Some(h) = e.hint {
        err = err.hint(h);
    }
    err
}

/// One entry of `annotations.dsm.transforms`.
pub(crate) fn annotation_transform(
    t: &TransformSpec,
    what: &str,
    dialect: Dialect,
) -> Result<Box<dyn Transform>> {
    const KINDS: [&str; 4] = ["stream_maps", "field_mask", "transform_field", "validation"];
    let config = Value::Object(t.config.clone());
    let inner: Box<dyn Transform> = match t.kind.replace('-', "_").as_str() {
        "stream_maps" => compile_maps(&t.config, what, dialect)?,
        "field_mask" | "transform_field" => {
            Box::new(FieldMask::from_config(&config).map_err(|e| transform_config_error(e, what))?)
        }
        "validation" => {
            return Err(Error::config(format!(
                "{what}: validation is configured under `annotations.dsm.validation`"
            ))
            .hint("move it there: `validation: {on_error: quarantine, streams: {...}}`"));
        }
        other => {
            let mut err = Error::config(format!("{what}: unknown transform type `{other}`"));
            err = match crate::error::did_you_mean(other, KINDS.iter().copied()) {
                Some(s) => err.hint(format!("did you mean `{s}`?")),
                None => err.hint("the types are `stream_maps` and `field_mask`"),
            };
            return Err(err);
        }
    };
    if t.streams.is_empty() {
        Ok(inner)
    } else {
        Ok(Box::new(OnlyStreams {
            streams: t.streams.iter().cloned().collect(),
            inner,
        }))
    }
}

/// A transform limited to some streams (`streams:` of an annotation transform).
struct OnlyStreams {
    streams: HashSet<String>,
    inner: Box<dyn Transform>,
}

impl Transform for OnlyStreams {
    fn lineage(&self, stream: &str) -> Vec<crate::transform::Lineage> {
        if self.streams.contains(stream) {
            self.inner.lineage(stream)
        } else {
            vec![crate::transform::Lineage::same(stream)]
        }
    }

    fn touches(&self, stream: &str) -> bool {
        self.streams.contains(stream) && self.inner.touches(stream)
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        self.inner.apply(message, out)
    }

    // The fast paths of the transform inside, for its streams: without these a map limited to
    // `streams:` parsed and re-serialised every record, and lost the line path.
    fn apply_record_line(
        &mut self,
        stream: &str,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TransformError> {
        if !self.streams.contains(stream) {
            return Ok(false);
        }
        self.inner.apply_record_line(stream, line, out)
    }

    fn maps_record_lines(&self, stream: &str) -> bool {
        self.streams.contains(stream) && self.inner.maps_record_lines(stream)
    }

    fn apply_record_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        lines: &[std::ops::Range<usize>],
        out: &mut Vec<u8>,
    ) -> crate::transform::LinesMapped {
        self.inner.apply_record_lines(stream, buf, lines, out)
    }

    fn filters_only(&self, stream: &str) -> bool {
        self.streams.contains(stream) && self.inner.filters_only(stream)
    }

    fn keep(&mut self, record: &RecordMessage) -> Result<bool, TransformError> {
        self.inner.keep(record)
    }

    fn on_state(&mut self, state: &Value) -> Result<(), TransformError> {
        self.inner.on_state(state)
    }

    fn finish(&mut self) -> Result<(), TransformError> {
        self.inner.finish()
    }
}

/// The validation mode of each stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationPolicies {
    default: Policy,
    streams: HashMap<String, Policy>,
    /// The classification label of each stream here (`*`: the others), when the project
    /// classifies its data.
    labels: BTreeMap<String, String>,
    /// The streams the extractor's own `annotations.dsm.validation.streams` names (a run that
    /// never sees one of them says so: the name may be wrong).
    named: Vec<String>,
}

impl ValidationPolicies {
    fn policy(&self, stream: &str) -> Policy {
        self.streams.get(stream).copied().unwrap_or(self.default)
    }

    fn describe(&self) -> String {
        let name = |p: Policy| format!("{p:?}").to_lowercase();
        let mut s = format!("record validation: {}", name(self.default));
        let mut listed: Vec<_> = self.streams.iter().collect();
        listed.sort_by(|a, b| a.0.cmp(b.0));
        for (stream, p) in listed {
            s.push_str(&format!(", `{stream}`: {}", name(*p)));
        }
        s
    }
}

fn policy_of(mode: OnError) -> Policy {
    match mode {
        OnError::Fail => Policy::Fail,
        OnError::Warn => Policy::Warn,
        OnError::Skip => Policy::Skip,
        OnError::Quarantine => Policy::Quarantine,
        OnError::Off => Policy::Off,
    }
}

/// The extractor's validation over the project's default; `None` when nothing is validated.
pub fn validation_policies(project: &Project, extractor: &Plugin) -> Option<ValidationPolicies> {
    let defaults = project.dsm().defaults.and_then(|d| d.validation);
    let own = extractor.annotations.validation.clone();
    let named: Vec<String> = own
        .as_ref()
        .map(|v| v.streams.keys().cloned().collect())
        .unwrap_or_default();
    let merged = match (defaults, own) {
        (None, None) => return None,
        (Some(v), None) | (None, Some(v)) => v,
        (Some(d), Some(o)) => {
            let mut streams = d.streams;
            streams.extend(o.streams);
            Validation {
                enabled: o.enabled.or(d.enabled),
                on_error: o.on_error.or(d.on_error),
                streams,
            }
        }
    };
    policies_of(&merged).map(|mut p| {
        p.named = named;
        p
    })
}

fn policies_of(v: &Validation) -> Option<ValidationPolicies> {
    if v.enabled == Some(false) {
        return None;
    }
    let default = match (v.on_error, v.enabled) {
        (Some(mode), _) => policy_of(mode),
        // `enabled: true` alone: a bad record stops the run.
        (None, Some(true)) => Policy::Fail,
        (None, _) => Policy::Off,
    };
    let streams: HashMap<String, Policy> = v
        .streams
        .iter()
        .map(|(s, m)| (s.clone(), policy_of(*m)))
        .collect();
    if default == Policy::Off && streams.values().all(|p| *p == Policy::Off) {
        return None;
    }
    Some(ValidationPolicies {
        default,
        streams,
        labels: BTreeMap::new(),
        named: Vec::new(),
    })
}

/// The dead-letter files of a run, filled in while it runs.
#[derive(Debug, Clone, Default)]
pub struct Quarantined {
    files: Arc<Mutex<BTreeMap<String, QuarantineFile>>>,
    /// Records the `skip` policy dropped, by stream.
    skipped: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Streams a validation policy names that the run never sent.
    unmatched: Arc<Mutex<Vec<String>>>,
}

/// A dead-letter file: where, how many records, and its stream's classification label.
type QuarantineFile = (PathBuf, u64, Option<String>);

impl Quarantined {
    /// The streams the extractor's validation policies name that this run never sent.
    pub fn unmatched(&self) -> Vec<String> {
        self.unmatched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_skipped(&self, stream: &str, records: u64) {
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.insert(stream.to_owned(), records);
    }

    /// The records validation dropped (`skip`), by stream.
    pub fn skipped(&self) -> Vec<(String, u64)> {
        let skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    fn set(&self, stream: &str, path: &Path, records: u64, label: Option<String>) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.insert(stream.to_owned(), (path.to_path_buf(), records, label));
    }

    /// The files written, for the run history.
    pub fn artifacts(&self) -> Vec<RunArtifact> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .iter()
            .filter(|(_, (_, n, _))| *n > 0)
            .map(|(stream, (path, n, label))| RunArtifact {
                path: path.clone(),
                kind: "quarantine".into(),
                stream: Some(stream.clone()),
                records: *n,
                label: label.clone(),
            })
            .collect()
    }
}

/// Validation with a dead-letter file per stream: one [`Validate`] per stream, made when the
/// stream's first message arrives.
struct StreamValidation {
    policies: ValidationPolicies,
    dir: PathBuf,
    run_id: String,
    per_stream: HashMap<String, Validate>,
    files: Quarantined,
}

impl StreamValidation {
    fn label_of(&self, stream: &str) -> Option<&str> {
        let labels = &self.policies.labels;
        labels
            .get(stream)
            .or_else(|| labels.get(crate::classification::OTHER_STREAMS))
            .map(String::as_str)
    }

    fn file_of(&self, stream: &str) -> PathBuf {
        // Stream names and `--run-id` values may hold `/` or `..`: keep to one file name.
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let name = match self.label_of(stream) {
            Some(label) => format!(
                "{}-{}.{}.jsonl",
                safe(&self.run_id),
                safe(stream),
                safe(label)
            ),
            None => format!("{}-{}.jsonl", safe(&self.run_id), safe(stream)),
        };
        self.dir.join(name)
    }

    /// Runs `f` on the stream's validator, then records what it quarantined or skipped.
    fn tracked<T>(
        &mut self,
        stream: &str,
        f: impl FnOnce(&mut Validate) -> T,
    ) -> Result<T, TransformError> {
        let v = self.validator(stream)?;
        let (before, skipped_before) = (v.quarantined(), v.skipped());
        let result = f(v);
        let after = v.quarantined();
        let skipped = v.skipped();
        if after != before
            && let Some(path) = v.quarantine_path().map(Path::to_path_buf)
        {
            let label = self.label_of(stream).map(str::to_owned);
            self.files.set(stream, &path, after, label);
        }
        if skipped != skipped_before {
            self.files.set_skipped(stream, skipped);
        }
        Ok(result)
    }

    fn validator(&mut self, stream: &str) -> Result<&mut Validate, TransformError> {
        if !self.per_stream.contains_key(stream) {
            let policy = self.policies.policy(stream);
            let quarantine_path = if policy == Policy::Quarantine {
                crate::files::create_private_dir(&self.dir).map_err(|e| TransformError {
                    message: format!("cannot create `{}`: {e}", self.dir.display()),
                    hint: None,
                })?;
                Some(self.file_of(stream))
            } else {
                None
            };
            let v = Validate::new(ValidationSettings {
                default: policy,
                streams: HashMap::new(),
                quarantine_path,
            })?;
            self.per_stream.insert(stream.to_owned(), v);
        }
        Ok(self
            .per_stream
            .get_mut(stream)
            .expect("inserted just above"))
    }
}

impl Transform for StreamValidation {
    fn touches(&self, stream: &str) -> bool {
        self.policies.policy(stream) != Policy::Off
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        let Some(stream) = message.stream().map(str::to_owned) else {
            out.push(message);
            return Ok(());
        };
        self.tracked(&stream, |v| v.apply(message, out))?
    }

    // Validation only passes a record on or drops it: the pipeline keeps the record's own
    // bytes instead of re-serialising it (it did not, and ran at two thirds of the speed).
    fn filters_only(&self, _stream: &str) -> bool {
        true
    }

    fn keep(&mut self, record: &RecordMessage) -> Result<bool, TransformError> {
        self.tracked(&record.stream, |v| v.keep(record))?
    }

    fn finish(&mut self) -> Result<(), TransformError> {
        let unmatched: Vec<String> = self
            .policies
            .named
            .iter()
            .filter(|s| self.policies.policy(s) != Policy::Off && !self.per_stream.contains_key(*s))
            .cloned()
            .collect();
        *self
            .files
            .unmatched
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = unmatched;
        let mut first = Ok(());
        for v in self.per_stream.values_mut() {
            let r = v.finish();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_modes_merge_over_the_project_default() {
        let v: Validation = serde_json::from_value(serde_json::json!({
            "on_error": "warn", "streams": {"users": "quarantine", "logs": "off"}
        }))
        .unwrap();
        let p = policies_of(&v).unwrap();
        assert_eq!(p.policy("users"), Policy::Quarantine);
        assert_eq!(p.policy("logs"), Policy::Off);
        assert_eq!(p.policy("other"), Policy::Warn);
        assert_eq!(
            policies_of(&Validation {
                enabled: Some(true),
                ..Validation::default()
            })
            .unwrap()
            .policy("x"),
            Policy::Fail
        );
        assert!(policies_of(&Validation::default()).is_none());
        assert!(
            policies_of(&Validation {
                enabled: Some(false),
                on_error: Some(OnError::Fail),
                ..Validation::default()
            })
            .is_none()
        );
    }

    /// A bad record through `keep` (the pipeline's path for filters) is quarantined and
    /// counted exactly as through `apply`.
    #[test]
    fn validation_filters_by_keep_with_the_same_effects_as_apply() {
        let dir = tempfile::tempdir().unwrap();
        let quarantined = Quarantined::default();
        let mut v = StreamValidation {
            policies: policies_of(
                &serde_json::from_value(serde_json::json!({"on_error": "quarantine"})).unwrap(),
            )
            .unwrap(),
            dir: dir.path().join("q"),
            run_id: "r1".into(),
            per_stream: HashMap::new(),
            files: quarantined.clone(),
        };
        let schema = br#"{"type":"SCHEMA","stream":"users","key_properties":[],"schema":{"type":"object","properties":{"id":{"type":"integer"}}}}"#;
        let mut out = Vec::new();
        v.apply(Message::parse(schema).unwrap(), &mut out).unwrap();
        assert!(v.filters_only("users"));
        let record = |line: &[u8]| match Message::parse(line).unwrap() {
            Message::Record(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(
            v.keep(&record(
                br#"{"type":"RECORD","stream":"users","record":{"id":1}}"#
            ))
            .unwrap()
        );
        assert!(
            !v.keep(&record(
                br#"{"type":"RECORD","stream":"users","record":{"id":"x"}}"#
            ))
            .unwrap()
        );
        v.finish().unwrap();
        let artifacts = quarantined.artifacts();
        assert_eq!(artifacts.len(), 1, "{artifacts:?}");
        assert_eq!(artifacts[0].records, 1);
        let text = std::fs::read_to_string(&artifacts[0].path).unwrap();
        assert!(text.contains(r#""x""#), "{text}");
    }

    /// A transform limited to some streams keeps the fast paths of the one inside for those
    /// streams, and declines the others.
    #[test]
    fn only_streams_forwards_the_line_path_for_its_streams() {
        let maps = crate::transform::StreamMaps::from_config(&serde_json::json!({
            "stream_maps": {"users": {"email": null, "h": "md5(email)"}}
        }))
        .unwrap();
        let mut t = OnlyStreams {
            streams: ["users".to_owned()].into(),
            inner: Box::new(maps),
        };
        let schema = br#"{"type":"SCHEMA","stream":"users","key_properties":["id"],"schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"}}}}"#;
        let mut out = Vec::new();
        t.apply(Message::parse(schema).unwrap(), &mut out).unwrap();
        let line = br#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"a@b.c"}}"#;
        let mut fast = Vec::new();
        assert!(t.apply_record_line("users", line, &mut fast).unwrap());
        let mut produced = Vec::new();
        t.apply(Message::parse(line).unwrap(), &mut produced)
            .unwrap();
        let mut slow = Vec::new();
        for m in produced {
            m.write_line(&mut slow);
            slow.push(b'\n');
        }
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&slow)
        );
        assert!(t.maps_record_lines("users"));
        assert!(!t.maps_record_lines("other"));
        assert!(!t.apply_record_line("other", line, &mut fast).unwrap());
        assert!(!t.filters_only("users"));
    }

    #[test]
    fn only_the_map_transformer_family_is_recognised() {
        let yml = "plugins:
  mappers:
  - name: hashing
    namespace: hashing
    pip_url: git+https://github.com/MeltanoLabs/meltano-map-transform.git
  - name: meltano-map-transformer
    namespace: meltano_map_transformer
  - name: other
    namespace: other
    pip_url: mapper-other
";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meltano.yml"), yml).unwrap();
        let project = Project::load(dir.path()).unwrap();
        let found: Vec<(&str, bool)> = project
            .plugins()
            .iter()
            .map(|p| (p.name.as_str(), is_map_transformer(p)))
            .collect();
        assert_eq!(
            found,
            [
                ("hashing", true),
                ("meltano-map-transformer", true),
                ("other", false)
            ]
        );
    }
}

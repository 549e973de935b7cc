//! Reading a stream maps configuration: entries, expressions, faker seed, lineage.

use super::*;

use crate::transform::expr::{Expr, Faker};
use crate::transform::{Keeps, Lineage, TransformError};
use globset::Glob;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

impl StreamMaps {
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
            sdk_schemas: false,
        })
    }
}

pub(super) fn hash_seed(text: &str) -> u64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(text.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

pub(super) fn compile(stream: &str, property: &str, source: &str) -> Result<Expr, TransformError> {
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
pub(super) fn custom_lineage(c: &CustomMap, stream: String) -> Lineage {
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

pub(super) fn parse_entry(key: &str, def: &Value) -> Result<Entry, TransformError> {
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

//! The `json` module: `json.loads` and `json.dumps` with Python's options and spacing.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use super::*;

/// `json.loads` result: Python reads non-integers as floats.
pub(super) fn from_json_owned<'a>(v: Value) -> Py<'a> {
    match v {
        Value::Null => Py::None,
        Value::Bool(b) => Py::Bool(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Py::Int(i),
            None => Py::Float(n.as_str().parse().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Py::Str(Cow::Owned(s)),
        Value::Array(a) => Py::List(a.into_iter().map(from_json_owned).collect()),
        Value::Object(o) => Py::Dict(
            o.into_iter()
                .map(|(k, v)| (Key::Str(k), from_json_owned(v)))
                .collect(),
        ),
    }
}

impl<'c, 'a> Interp<'c, 'a> {
    pub(super) fn dumps(
        &mut self,
        v: &Py<'a>,
        o: &DumpOpts,
        out: &mut String,
        depth: usize,
    ) -> Result<(), EvalError> {
        self.step()?;
        if depth > 128 {
            return fail("json.dumps: nesting is too deep");
        }
        if out.len() > MAX_ALLOC {
            return Err(EvalError::Limit("json.dumps output is too large".into()));
        }
        match v {
            Py::None => out.push_str("null"),
            Py::Bool(true) => out.push_str("true"),
            Py::Bool(false) => out.push_str("false"),
            Py::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Py::Float(f) => out.push_str(&match float_repr(*f).as_str() {
                "nan" => "NaN".to_string(),
                "inf" => "Infinity".to_string(),
                "-inf" => "-Infinity".to_string(),
                s => s.to_string(),
            }),
            Py::Str(s) => crate::pyjson::write_string(s, o.ensure_ascii, out),
            Py::Dec(_) | Py::Date(_) | Py::DateTime(..) | Py::Delta(_) | Py::Global(_) => {
                if o.default_str {
                    crate::pyjson::write_string(&py_str(v), o.ensure_ascii, out);
                } else {
                    let name = if matches!(v, Py::Dec(_)) {
                        "Decimal"
                    } else {
                        v.type_name()
                    };
                    return fail(format!("Object of type {name} is not JSON serializable"));
                }
            }
            Py::JArr(_) | Py::List(_) | Py::Tuple(_) => {
                let items = match v {
                    Py::List(l) | Py::Tuple(l) => l.clone(),
                    other => seq(other).expect("a JSON array is a sequence"),
                };
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&o.item_sep);
                    }
                    self.dumps(item, o, out, depth + 1)?;
                }
                out.push(']');
            }
            Py::JObj(_) | Py::Dict(_) => {
                let mut entries: Vec<(String, Py<'a>)> = Vec::new();
                for (k, val) in dict_of(v).expect("a dict") {
                    let ks = match k {
                        Key::Str(s) => s,
                        Key::None => "null".into(),
                        Key::Int(i) => i.to_string(),
                        Key::Float(b) => float_repr(f64::from_bits(b)),
                        Key::Tuple(_) => {
                            return fail("keys must be str, int, float, bool or None, not tuple");
                        }
                        Key::Delta(_) => {
                            return fail(
                                "keys must be str, int, float, bool or None, not timedelta",
                            );
                        }
                    };
                    entries.push((ks, val));
                }
                if o.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                out.push('{');
                for (i, (k, val)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&o.item_sep);
                    }
                    crate::pyjson::write_string(k, o.ensure_ascii, out);
                    out.push_str(&o.key_sep);
                    self.dumps(val, o, out, depth + 1)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

pub(super) struct DumpOpts {
    pub(super) default_str: bool,
    pub(super) sort_keys: bool,
    pub(super) ensure_ascii: bool,
    pub(super) item_sep: String,
    pub(super) key_sep: String,
}

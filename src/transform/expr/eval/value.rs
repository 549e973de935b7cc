//! Python values during evaluation: conversion from the record's JSON, `str()`, `repr()`,
//! `format()`, equality, ordering, hashing keys and indexing.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{Datelike, FixedOffset, NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use serde_json::{Map, Number, Value};

use super::*;

/// A Python value during evaluation. Arrays and objects of the record are borrowed, not
/// copied, until an operation needs them as Python lists or dicts.
#[derive(Debug, Clone)]
pub enum Py<'a> {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An integer (64-bit; overflow is an error, not a big integer).
    Int(i64),
    /// A float.
    Float(f64),
    /// A non-integer JSON number, kept as its text (the SDK reads these as `Decimal`).
    Dec(Cow<'a, str>),
    /// A string.
    Str(Cow<'a, str>),
    /// A JSON array of the record, borrowed.
    JArr(&'a Vec<Value>),
    /// A JSON object of the record, borrowed.
    JObj(&'a Map<String, Value>),
    /// A list.
    List(Vec<Py<'a>>),
    /// A tuple.
    Tuple(Vec<Py<'a>>),
    /// A dict (keys keep insertion order).
    Dict(IndexMap<Key, Py<'a>>),
    /// A `datetime.date`.
    Date(NaiveDate),
    /// A `datetime.datetime`, naive or with a fixed offset.
    DateTime(NaiveDateTime, Option<FixedOffset>),
    /// A `datetime.timedelta`, in microseconds.
    Delta(i64),
    /// A built-in function, module or object.
    Global(Global),
}

/// A hashable dict key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `None`.
    None,
    /// Integers and booleans (Python hashes `True` as `1`).
    Int(i64),
    /// A non-integral float, by bits.
    Float(u64),
    /// A string.
    Str(String),
    /// A tuple.
    Tuple(Vec<Key>),
    /// A timedelta, in microseconds.
    Delta(i64),
}

impl Key {
    pub(super) fn to_py<'a>(&self) -> Py<'a> {
        match self {
            Key::None => Py::None,
            Key::Int(i) => Py::Int(*i),
            Key::Float(b) => Py::Float(f64::from_bits(*b)),
            Key::Str(s) => Py::Str(Cow::Owned(s.clone())),
            Key::Tuple(t) => Py::Tuple(t.iter().map(Key::to_py).collect()),
            Key::Delta(d) => Py::Delta(*d),
        }
    }
}
/// Reads a JSON value of the record as a Python value, without copying containers.
pub(crate) fn from_json(v: &Value) -> Py<'_> {
    match v {
        Value::Null => Py::None,
        Value::Bool(b) => Py::Bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => Py::Str(Cow::Borrowed(s)),
        Value::Array(a) => Py::JArr(a),
        Value::Object(o) => Py::JObj(o),
    }
}

pub(super) fn number(n: &Number) -> Py<'_> {
    if let Some(i) = n.as_i64() {
        return Py::Int(i);
    }
    let text = n.as_str();
    if text.contains(['.', 'e', 'E']) {
        Py::Dec(Cow::Borrowed(text))
    } else {
        Py::Float(text.parse().unwrap_or(f64::NAN))
    }
}

/// Python's `repr()` of a float: shortest round-trip digits, exponent outside 1e-4..1e16.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let rest = &digits[1..];
        let m = if rest.is_empty() {
            digits[..1].to_string()
        } else {
            format!("{}.{}", &digits[..1], rest)
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}
impl<'a> Py<'a> {
    /// The Python type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Py::None => "NoneType",
            Py::Bool(_) => "bool",
            Py::Int(_) => "int",
            Py::Float(_) => "float",
            Py::Dec(_) => "decimal.Decimal",
            Py::Str(_) => "str",
            Py::JArr(_) | Py::List(_) => "list",
            Py::JObj(_) | Py::Dict(_) => "dict",
            Py::Tuple(_) => "tuple",
            Py::Date(_) => "date",
            Py::DateTime(..) => "datetime",
            Py::Delta(_) => "timedelta",
            Py::Global(Global::Func(_)) => "builtin_function",
            Py::Global(_) => "module",
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Py::None => false,
            Py::Bool(b) => *b,
            Py::Int(i) => *i != 0,
            Py::Float(f) => *f != 0.0,
            Py::Dec(d) => d.parse::<f64>().map(|f| f != 0.0).unwrap_or(true),
            Py::Str(s) => !s.is_empty(),
            Py::JArr(a) => !a.is_empty(),
            Py::JObj(o) => !o.is_empty(),
            Py::List(l) | Py::Tuple(l) => !l.is_empty(),
            Py::Dict(d) => !d.is_empty(),
            Py::Date(_) | Py::DateTime(..) | Py::Global(_) => true,
            Py::Delta(d) => *d != 0,
        }
    }

    /// Converts the result of an expression to JSON, the way the SDK writes it.
    pub fn to_json(&self) -> Result<Value, EvalError> {
        Ok(match self {
            Py::None => Value::Null,
            Py::Bool(b) => Value::Bool(*b),
            Py::Int(i) => Value::from(*i),
            Py::Float(f) if f.is_finite() => Value::Number(
                float_repr(*f)
                    .parse()
                    .expect("a finite float's repr is a JSON number"),
            ),
            Py::Float(_) => Value::Null,
            Py::Dec(d) => match d.parse::<Number>() {
                Ok(n) => Value::Number(n),
                Err(_) => Value::String(d.to_string()),
            },
            Py::Str(s) => Value::String(s.to_string()),
            // The SDK writes a timedelta as its `str()`.
            Py::Delta(d) => Value::String(delta::to_str(*d)),
            Py::JArr(a) => Value::Array((*a).clone()),
            Py::JObj(o) => Value::Object((*o).clone()),
            Py::List(l) | Py::Tuple(l) => {
                Value::Array(l.iter().map(Py::to_json).collect::<Result<_, _>>()?)
            }
            Py::Dict(d) => {
                let mut m = Map::new();
                for (k, v) in d {
                    let key = match k {
                        Key::Str(s) => s.clone(),
                        other => py_str(&other.to_py()),
                    };
                    m.insert(key, v.to_json()?);
                }
                Value::Object(m)
            }
            Py::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Py::DateTime(dt, off) => Value::String(iso_datetime(dt, off, 'T')),
            Py::Global(g) => {
                return fail(format!("`{}` cannot be written to a record", g.name()));
            }
        })
    }
}

/// The bytes a value takes, counted through lists, tuples and dicts (16 bytes an item, 32 an
/// entry, plus strings' lengths). With `owned_only`, only what a clone copies: text borrowed
/// from the record and the record's own arrays and objects count nothing. Otherwise also the
/// record data an operation on the value may read: its strings' lengths, and its arrays and
/// objects by their item count alone (the time to count stays constant for the lookups most
/// expressions make in `record`; a record's size is bounded by the line limit).
pub(super) fn size_of(v: &Py<'_>, owned_only: bool) -> usize {
    match v {
        Py::Str(Cow::Owned(s)) | Py::Dec(Cow::Owned(s)) => s.len(),
        Py::Str(Cow::Borrowed(s)) | Py::Dec(Cow::Borrowed(s)) if !owned_only => s.len(),
        Py::List(l) | Py::Tuple(l) => l.iter().fold(16 * l.len(), |n, x| {
            n.saturating_add(size_of(x, owned_only))
        }),
        Py::Dict(d) => d.iter().fold(32 * d.len(), |n, (k, x)| {
            n.saturating_add(key_size(k))
                .saturating_add(size_of(x, owned_only))
        }),
        Py::JArr(a) if !owned_only => 16 * a.len(),
        Py::JObj(o) if !owned_only => 32 * o.len(),
        _ => 0,
    }
}

fn key_size(k: &Key) -> usize {
    match k {
        Key::Str(s) => s.len(),
        Key::Tuple(t) => t
            .iter()
            .fold(16 * t.len(), |n, k| n.saturating_add(key_size(k))),
        _ => 0,
    }
}

/// Python's `str()`.
pub(super) fn py_str(v: &Py<'_>) -> String {
    match v {
        Py::Str(s) => s.to_string(),
        Py::Date(d) => d.format("%Y-%m-%d").to_string(),
        Py::DateTime(dt, off) => iso_datetime(dt, off, ' '),
        Py::Delta(d) => delta::to_str(*d),
        other => py_repr(other),
    }
}

/// Python's `format(v, spec)`.
pub(super) fn format_py(v: &Py<'_>, spec: &str) -> Result<String, EvalError> {
    use crate::transform::expr::format::{Formattable, format_value};
    let f = match v {
        Py::Str(s) => Formattable::Str(s),
        Py::Int(i) => Formattable::Int(*i),
        Py::Bool(b) if !spec.is_empty() => Formattable::Int(i64::from(*b)),
        Py::Float(f) => Formattable::Float(*f),
        Py::Dec(d) => Formattable::Dec(d),
        Py::Date(d) if !spec.is_empty() => {
            return strftime(
                spec,
                &d.and_hms_opt(0, 0, 0).expect("midnight exists"),
                &None,
            );
        }
        Py::DateTime(dt, off) if !spec.is_empty() => return strftime(spec, dt, off),
        Py::Delta(d) => Formattable::Other(delta::to_str(*d), "timedelta"),
        other => Formattable::Other(py_str(other), other.type_name()),
    };
    format_value(f, spec, MAX_ALLOC)
}

/// Python's `repr()`.
pub(super) fn py_repr(v: &Py<'_>) -> String {
    match v {
        Py::None => "None".into(),
        Py::Bool(true) => "True".into(),
        Py::Bool(false) => "False".into(),
        Py::Int(i) => i.to_string(),
        Py::Float(f) => float_repr(*f),
        Py::Dec(d) => d.to_string(),
        Py::Delta(d) => delta::to_repr(*d),
        Py::Str(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::with_capacity(s.len() + 2);
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        Py::JArr(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| py_repr(&from_json(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Py::List(l) => format!("[{}]", l.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Py::Tuple(l) if l.len() == 1 => format!("({},)", py_repr(&l[0])),
        Py::Tuple(l) => format!("({})", l.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Py::JObj(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    py_repr(&Py::Str(Cow::Borrowed(k))),
                    py_repr(&from_json(v))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Py::Dict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&k.to_py()), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Py::Date(d) => format!("datetime.date({}, {}, {})", d.year(), d.month(), d.day()),
        Py::DateTime(dt, _) => {
            format!("datetime.datetime({})", dt.format("%Y, %-m, %-d, %-H, %-M"))
        }
        Py::Global(g) => format!("<{}>", g.name()),
    }
}

#[derive(Clone)]
pub(super) enum Num {
    I(i64),
    F(f64),
    /// A `decimal.Decimal` (a non-integral number of the record, or a result computed from one).
    D(Dec),
}

pub(super) fn num(v: &Py<'_>) -> Option<Num> {
    match v {
        Py::Bool(b) => Some(Num::I(i64::from(*b))),
        Py::Int(i) => Some(Num::I(*i)),
        Py::Float(f) => Some(Num::F(*f)),
        Py::Dec(d) => Some(match Dec::parse(d) {
            Some(x) => Num::D(x),
            None => Num::F(d.parse().unwrap_or(f64::NAN)),
        }),
        _ => None,
    }
}

pub(super) fn as_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
        Num::D(d) => d.to_f64(),
    }
}

/// A decimal result as a value.
pub(super) fn dec<'a>(
    r: Result<Dec, crate::transform::expr::decimal::DecError>,
) -> Result<Py<'a>, EvalError> {
    match r {
        Ok(d) => Ok(Py::Dec(Cow::Owned(d.to_string()))),
        Err(e) => fail(e.to_string()),
    }
}

/// Compares numbers the way Python does: exactly, also between a `Decimal` and a float.
pub(super) fn num_cmp(x: &Num, y: &Num) -> Option<Ordering> {
    let exact = |n: &Num| match n {
        Num::I(i) => Some(Dec::from_i64(*i)),
        Num::F(f) => Dec::from_f64(*f),
        Num::D(d) => Some(d.clone()),
    };
    match (x, y) {
        (Num::I(a), Num::I(b)) => Some(a.cmp(b)),
        (Num::D(_), _) | (_, Num::D(_)) => match (exact(x), exact(y)) {
            (Some(a), Some(b)) => Some(a.cmp_value(&b)),
            // An infinity or NaN float.
            _ => as_f64(x.clone()).partial_cmp(&as_f64(y.clone())),
        },
        _ => as_f64(x.clone()).partial_cmp(&as_f64(y.clone())),
    }
}

/// The number of items of a list or a record's array (0 for anything else).
pub(super) fn seq_len(v: &Py<'_>) -> usize {
    match v {
        Py::List(l) => l.len(),
        Py::JArr(a) => a.len(),
        _ => 0,
    }
}

pub(super) fn seq<'a>(v: &Py<'a>) -> Option<Vec<Py<'a>>> {
    match v {
        Py::List(l) => Some(l.clone()),
        Py::JArr(a) => Some(a.iter().map(from_json).collect()),
        _ => None,
    }
}

pub(super) fn py_eq(a: &Py<'_>, b: &Py<'_>) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return num_cmp(&x, &y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Str(x), Py::Str(y)) => x == y,
        (Py::Tuple(x), Py::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Py::Date(x), Py::Date(y)) => x == y,
        (Py::Delta(x), Py::Delta(y)) => x == y,
        (Py::DateTime(x, o), Py::DateTime(y, p)) => match (o, p) {
            (None, None) => x == y,
            (Some(o), Some(p)) => *x - *o == *y - *p,
            _ => false,
        },
        (Py::Global(x), Py::Global(y)) => x == y,
        _ => {
            if let (Some(x), Some(y)) = (seq(a), seq(b)) {
                return x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| py_eq(p, q));
            }
            match (dict_of(a), dict_of(b)) {
                (Some(x), Some(y)) => {
                    x.len() == y.len()
                        && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
                }
                _ => false,
            }
        }
    }
}

pub(super) fn dict_of<'a>(v: &Py<'a>) -> Option<IndexMap<Key, Py<'a>>> {
    match v {
        Py::Dict(d) => Some(d.clone()),
        Py::JObj(o) => Some(
            o.iter()
                .map(|(k, v)| (Key::Str(k.clone()), from_json(v)))
                .collect(),
        ),
        _ => None,
    }
}

pub(super) fn py_cmp(a: &Py<'_>, b: &Py<'_>) -> Result<Ordering, EvalError> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(num_cmp(&x, &y).unwrap_or(Ordering::Equal));
    }
    match (a, b) {
        (Py::Str(x), Py::Str(y)) => Ok(x.cmp(y)),
        (Py::Date(x), Py::Date(y)) => Ok(x.cmp(y)),
        (Py::Delta(x), Py::Delta(y)) => Ok(x.cmp(y)),
        (Py::DateTime(x, o), Py::DateTime(y, p)) => match (o, p) {
            (None, None) => Ok(x.cmp(y)),
            (Some(o), Some(p)) => Ok((*x - *o).cmp(&(*y - *p))),
            _ => fail("can't compare offset-naive and offset-aware datetimes"),
        },
        (Py::Tuple(x), Py::Tuple(y)) => seq_cmp(x, y),
        _ => match (seq(a), seq(b)) {
            (Some(x), Some(y)) => seq_cmp(&x, &y),
            _ => fail(format!(
                "'<' not supported between instances of '{}' and '{}'",
                a.type_name(),
                b.type_name()
            )),
        },
    }
}

pub(super) fn seq_cmp(x: &[Py<'_>], y: &[Py<'_>]) -> Result<Ordering, EvalError> {
    for (p, q) in x.iter().zip(y) {
        if !py_eq(p, q) {
            return py_cmp(p, q);
        }
    }
    Ok(x.len().cmp(&y.len()))
}

pub(super) fn key_of(v: &Py<'_>) -> Result<Key, EvalError> {
    Ok(match v {
        Py::None => Key::None,
        Py::Bool(b) => Key::Int(i64::from(*b)),
        Py::Int(i) => Key::Int(*i),
        Py::Float(_) | Py::Dec(_) => {
            let f = num(v).map(as_f64).unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Key::Int(f as i64)
            } else {
                Key::Float(f.to_bits())
            }
        }
        Py::Str(s) => Key::Str(s.to_string()),
        Py::Tuple(t) => Key::Tuple(t.iter().map(key_of).collect::<Result<_, _>>()?),
        Py::Delta(d) => Key::Delta(*d),
        other => return fail(format!("unhashable type: '{}'", other.type_name())),
    })
}

pub(super) fn norm_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    (0..len).contains(&j).then_some(j as usize)
}

pub(super) fn slice_indices(
    len: usize,
    start: Option<i64>,
    stop: Option<i64>,
    step: i64,
) -> Vec<usize> {
    let len = len as i64;
    let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
    let mut out = Vec::new();
    if step > 0 {
        let s = start.map_or(0, |s| clamp(if s < 0 { s + len } else { s }, 0, len));
        let e = stop.map_or(len, |e| clamp(if e < 0 { e + len } else { e }, 0, len));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let s = start.map_or(len - 1, |s| {
            clamp(if s < 0 { s + len } else { s }, -1, len - 1)
        });
        let e = stop.map_or(-1, |e| clamp(if e < 0 { e + len } else { e }, -1, len - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    out
}
pub(super) fn args_rest<'a>(arg: &mut impl FnMut() -> Py<'a>, argc: usize) -> Vec<Py<'a>> {
    (0..argc).map(|_| arg()).collect()
}

pub(super) fn dedup(items: Vec<Py<'_>>) -> Result<Py<'_>, EvalError> {
    let mut seen = IndexMap::new();
    for i in items {
        seen.entry(key_of(&i)?).or_insert(i);
    }
    Ok(Py::List(seen.into_values().collect()))
}

pub(super) fn is_same(a: &Py<'_>, b: &Py<'_>) -> bool {
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Bool(x), Py::Bool(y)) => x == y,
        (Py::Global(x), Py::Global(y)) => x == y,
        _ => false,
    }
}

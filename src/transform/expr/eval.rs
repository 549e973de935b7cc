//! Values and the interpreter: Python semantics for the operations stream maps use.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Timelike};
use indexmap::IndexMap;
use md5::Digest as _;
use serde_json::{Map, Number, Value};

use super::decimal::Dec;
use super::parse::{BinOp, CmpOp, Const, Generator, Node, Target};
use super::{Context, EvalError, MAX_ALLOC, MAX_STEPS, delta};

/// Built-in names: variables, functions and modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// `record` and `_`: the whole record.
    Record,
    /// `self`: the property's current value.
    SelfValue,
    /// `config`: `stream_map_config`.
    Config,
    /// `__stream_name__`.
    StreamName,
    /// `__original_stream_name__`.
    OriginalStreamName,
    /// `fake`: the Faker instance.
    Fake,
    /// The `json` module.
    Json,
    /// The `datetime` module.
    Datetime,
    /// `datetime.datetime`.
    DatetimeClass,
    /// `datetime.date`.
    DateClass,
    /// `datetime.timedelta`.
    DeltaClass,
    /// A function.
    Func(Func),
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// (each variant is the Python function of the same name)
pub enum Func {
    Int,
    Float,
    Str,
    Bool,
    Len,
    Md5,
    Sha256,
    Dict,
    List,
    Tuple,
    Set,
    Min,
    Max,
    Abs,
    Round,
    Sum,
    Sorted,
    Any,
    All,
    Range,
    Enumerate,
    Zip,
    JsonDumps,
    JsonLoads,
    DtFromIso,
    DtStrptime,
    DtNow,
    DtUtcNow,
    DateFromIso,
    DateToday,
    /// `format(value, spec)`, with a conversion (`r`, `s`, `a`) as a third argument: the
    /// replacement fields of f-strings. Named `__format__` so no record property is hidden.
    Format,
}

const FUNCS: [(&str, Func); 21] = [
    ("int", Func::Int),
    ("float", Func::Float),
    ("str", Func::Str),
    ("bool", Func::Bool),
    ("len", Func::Len),
    ("md5", Func::Md5),
    ("sha256", Func::Sha256),
    ("dict", Func::Dict),
    ("list", Func::List),
    ("tuple", Func::Tuple),
    ("set", Func::Set),
    ("min", Func::Min),
    ("max", Func::Max),
    ("abs", Func::Abs),
    ("round", Func::Round),
    ("sum", Func::Sum),
    ("sorted", Func::Sorted),
    ("any", Func::Any),
    ("all", Func::All),
    ("range", Func::Range),
    ("enumerate", Func::Enumerate),
];

/// The name of a function the Singer SDK's evaluator does not define (its functions are
/// simpleeval's `int`, `float`, `str`, `rand`, `randint`, the compound types `list`, `tuple`,
/// `dict`, `set`, and the mapper's `bool`, `md5`, `sha256`, `datetime`, `json`); `None` for one
/// it has. f-strings call `__format__`, which the SDK runs as f-strings.
pub(crate) fn sdk_missing(f: Func) -> Option<&'static str> {
    Some(match f {
        Func::Len => "len",
        Func::Min => "min",
        Func::Max => "max",
        Func::Abs => "abs",
        Func::Round => "round",
        Func::Sum => "sum",
        Func::Sorted => "sorted",
        Func::Any => "any",
        Func::All => "all",
        Func::Range => "range",
        Func::Enumerate => "enumerate",
        Func::Zip => "zip",
        Func::Int
        | Func::Float
        | Func::Str
        | Func::Bool
        | Func::Md5
        | Func::Sha256
        | Func::Dict
        | Func::List
        | Func::Tuple
        | Func::Set
        | Func::JsonDumps
        | Func::JsonLoads
        | Func::DtFromIso
        | Func::DtStrptime
        | Func::DtNow
        | Func::DtUtcNow
        | Func::DateFromIso
        | Func::DateToday
        | Func::Format => return None,
    })
}

impl Global {
    /// The built-in a bare name refers to, if any.
    pub fn by_name(name: &str) -> Option<Global> {
        Some(match name {
            "record" | "_" => Global::Record,
            "self" => Global::SelfValue,
            "config" => Global::Config,
            "__stream_name__" => Global::StreamName,
            "__original_stream_name__" => Global::OriginalStreamName,
            "fake" => Global::Fake,
            "json" => Global::Json,
            "datetime" => Global::Datetime,
            "zip" => Global::Func(Func::Zip),
            "__format__" => Global::Func(Func::Format),
            _ => {
                return FUNCS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| Global::Func(*f));
            }
        })
    }

    /// Whether calling this name can work.
    pub fn is_callable(&self) -> bool {
        matches!(
            self,
            Global::Func(_) | Global::DatetimeClass | Global::DateClass | Global::DeltaClass
        )
    }

    /// The name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Global::Record => "record",
            Global::SelfValue => "self",
            Global::Config => "config",
            Global::StreamName => "__stream_name__",
            Global::OriginalStreamName => "__original_stream_name__",
            Global::Fake => "fake",
            Global::Json => "json",
            Global::Datetime => "datetime",
            Global::DatetimeClass => "datetime.datetime",
            Global::DateClass => "datetime.date",
            Global::DeltaClass => "datetime.timedelta",
            Global::Func(_) => "function",
        }
    }
}

const STR_METHODS: &[&str] = &[
    "format",
    "lower",
    "upper",
    "strip",
    "lstrip",
    "rstrip",
    "split",
    "rsplit",
    "replace",
    "startswith",
    "endswith",
    "find",
    "rfind",
    "index",
    "count",
    "join",
    "title",
    "capitalize",
    "isdigit",
    "isalpha",
    "isalnum",
    "isnumeric",
    "isdecimal",
    "isspace",
    "islower",
    "isupper",
    "zfill",
    "splitlines",
    "casefold",
    "removeprefix",
    "removesuffix",
    "ljust",
    "rjust",
];
const OTHER_METHODS: &[&str] = &[
    // `datetime.datetime(...)` and `datetime.timedelta(...)`: the classes, called.
    "datetime",
    "timedelta",
    "total_seconds",
    "get",
    "keys",
    "values",
    "items",
    "isoformat",
    "strftime",
    "timestamp",
    "date",
    "weekday",
    "isoweekday",
    "fromisoformat",
    "strptime",
    "now",
    "utcnow",
    "today",
    "dumps",
    "loads",
    "seed_instance",
];
const ATTRIBUTES: &[&str] = &[
    "days",
    "seconds",
    "microseconds",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "microsecond",
    "datetime",
    "date",
];

/// Whether some value has a method called `name`.
pub(crate) fn is_known_method(name: &str) -> bool {
    STR_METHODS.contains(&name) || OTHER_METHODS.contains(&name) || super::fake::is_method(name)
}

/// Whether some value has an attribute or method called `name`.
pub(crate) fn is_known_attribute(name: &str) -> bool {
    is_known_method(name) || ATTRIBUTES.contains(&name)
}

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
    fn to_py<'a>(&self) -> Py<'a> {
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

fn fail<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Failed(msg.into()))
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

fn number(n: &Number) -> Py<'_> {
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

/// `json.loads` result: Python reads non-integers as floats.
fn from_json_owned<'a>(v: Value) -> Py<'a> {
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

pub(crate) fn iso_datetime(dt: &NaiveDateTime, off: &Option<FixedOffset>, sep: char) -> String {
    let mut s = dt.format("%Y-%m-%d").to_string();
    s.push(sep);
    let _ = write!(s, "{}", dt.format("%H:%M:%S"));
    let micros = dt.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        let _ = write!(s, ".{micros:06}");
    }
    if let Some(o) = off {
        s.push_str(&offset_text(o));
    }
    s
}

fn offset_text(o: &FixedOffset) -> String {
    let secs = o.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let mut s = format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60);
    if a % 60 != 0 {
        let _ = write!(s, ":{:02}", a % 60);
    }
    s
}

/// `datetime.datetime.fromisoformat`, as Python 3.11 reads the common forms.
pub(crate) fn parse_iso_datetime(s: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let s = s.trim();
    let date = NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
    if s.len() == 10 {
        return Some((date.and_hms_opt(0, 0, 0)?, None));
    }
    let rest = s.get(11..)?;
    let (time, offset) = if let Some(t) = rest.strip_suffix('Z') {
        (t, Some(FixedOffset::east_opt(0)?))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let o = &rest[i + 1..];
        let (h, m, sec) = match o.len() {
            5 => (o.get(..2)?, o.get(3..5)?, "0"),
            4 => (o.get(..2)?, o.get(2..4)?, "0"),
            8 => (o.get(..2)?, o.get(3..5)?, o.get(6..8)?),
            2 => (o.get(..2)?, "0", "0"),
            _ => return None,
        };
        let secs = h.parse::<i32>().ok()? * 3600
            + m.parse::<i32>().ok()? * 60
            + sec.parse::<i32>().ok()?;
        let secs = if rest.as_bytes()[i] == b'-' {
            -secs
        } else {
            secs
        };
        (&rest[..i], Some(FixedOffset::east_opt(secs)?))
    } else {
        (rest, None)
    };
    let (hms, frac) = match time.split_once(['.', ',']) {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let num = |p: &str| -> Option<u32> {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let (h, m, sec) = match parts.as_slice() {
        [h] => (num(h)?, 0, 0),
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        _ => return None,
    };
    let micro = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let f6: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            f6.parse().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    Some((date.and_hms_micro_opt(h, m, sec, micro)?, offset))
}

fn strftime(fmt: &str, dt: &NaiveDateTime, off: &Option<FixedOffset>) -> Result<String, EvalError> {
    use chrono::format::{Item, StrftimeItems};
    let fmt = fmt.replace("%f", "%6f");
    let items: Vec<Item> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return fail(format!("invalid strftime format `{fmt}`"));
    }
    Ok(match off {
        Some(o) => DateTime::<FixedOffset>::from_naive_utc_and_offset(*dt - *o, *o)
            .format_with_items(items.into_iter())
            .to_string(),
        None => dt.format_with_items(items.into_iter()).to_string(),
    })
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

/// Python's `str()`.
fn py_str(v: &Py<'_>) -> String {
    match v {
        Py::Str(s) => s.to_string(),
        Py::Date(d) => d.format("%Y-%m-%d").to_string(),
        Py::DateTime(dt, off) => iso_datetime(dt, off, ' '),
        Py::Delta(d) => delta::to_str(*d),
        other => py_repr(other),
    }
}

/// `datetime.datetime(year, month, day, hour=0, minute=0, second=0, microsecond=0)` or
/// `datetime.date(year, month, day)`, by position or keyword, with Python's range checks.
fn construct_datetime<'a>(
    with_time: bool,
    args: Vec<Py<'a>>,
    kw: &[(&str, Py<'a>)],
) -> Result<Py<'a>, EvalError> {
    let names: &[&str] = if with_time {
        &[
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "microsecond",
        ]
    } else {
        &["year", "month", "day"]
    };
    let class = if with_time { "datetime" } else { "date" };
    if args.len() > names.len() {
        return fail(format!(
            "{class}() takes at most {} arguments ({} given)",
            names.len(),
            args.len()
        ));
    }
    let mut parts: Vec<Option<i64>> = vec![None; names.len()];
    for (i, a) in args.iter().enumerate() {
        parts[i] = Some(match a {
            Py::Int(n) => *n,
            other => {
                return fail(format!(
                    "'{}' object cannot be interpreted as an integer",
                    other.type_name()
                ));
            }
        });
    }
    for (name, v) in kw {
        let Some(i) = names.iter().position(|n| n == name) else {
            return fail(format!(
                "'{name}' is an invalid keyword argument for {class}()"
            ));
        };
        if parts[i].is_some() {
            return fail(format!(
                "argument for {class}() given by name ('{name}') and position"
            ));
        }
        let Py::Int(n) = v else {
            return fail(format!(
                "'{}' object cannot be interpreted as an integer",
                v.type_name()
            ));
        };
        parts[i] = Some(*n);
    }
    for (i, name) in names.iter().enumerate().take(3) {
        if parts[i].is_none() {
            return fail(format!(
                "{class}() missing required argument '{name}' (pos {})",
                i + 1
            ));
        }
    }
    let get = |i: usize| parts.get(i).copied().flatten().unwrap_or(0);
    let in_range = |v: i64, lo: i64, hi: i64, name: &str| -> Result<u32, EvalError> {
        if (lo..=hi).contains(&v) {
            Ok(v as u32)
        } else {
            fail(format!("{name} must be in {lo}..{hi}"))
        }
    };
    let year = in_range(get(0), 1, 9999, "year")?;
    let month = in_range(get(1), 1, 12, "month")?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, get(2).clamp(0, 32) as u32)
        .ok_or_else(|| EvalError::Failed("day is out of range for month".into()))?;
    if !with_time {
        return Ok(Py::Date(date));
    }
    let time = date
        .and_hms_micro_opt(
            in_range(get(3), 0, 23, "hour")?,
            in_range(get(4), 0, 59, "minute")?,
            in_range(get(5), 0, 59, "second")?,
            in_range(get(6), 0, 999_999, "microsecond")?,
        )
        .expect("the parts were checked");
    Ok(Py::DateTime(time, None))
}

/// `datetime.timedelta(days, seconds, microseconds, milliseconds, minutes, hours, weeks)`, by
/// position or keyword, each an int or a float; fractions round to the microsecond, half to
/// even.
fn construct_delta<'a>(args: &[Py<'a>], kw: &[(&str, Py<'a>)]) -> Result<Py<'a>, EvalError> {
    if args.len() > delta::UNITS.len() {
        return fail(format!(
            "timedelta() takes at most 7 arguments ({} given)",
            args.len()
        ));
    }
    let mut given: Vec<Option<&Py<'a>>> = vec![None; delta::UNITS.len()];
    for (i, a) in args.iter().enumerate() {
        given[i] = Some(a);
    }
    for (name, v) in kw {
        let Some(i) = delta::UNITS.iter().position(|(n, _)| n == name) else {
            return fail(format!(
                "'{name}' is an invalid keyword argument for timedelta()"
            ));
        };
        if given[i].is_some() {
            return fail(format!(
                "argument for timedelta() given by name ('{name}') and position"
            ));
        }
        given[i] = Some(v);
    }
    let mut whole: i128 = 0;
    let mut fraction = 0.0f64;
    for (v, (name, unit)) in given.iter().zip(delta::UNITS) {
        match v.map(num) {
            None => {}
            Some(Some(Num::D(_))) => {
                return fail(format!(
                    "TypeError: unsupported type for timedelta {name} component: decimal.Decimal"
                ));
            }
            Some(Some(Num::I(i))) => whole += i128::from(i) * i128::from(unit),
            Some(Some(Num::F(f))) => {
                let w = f.trunc();
                if w.abs() > 1.0e15 {
                    return fail("OverflowError: timedelta out of range");
                }
                whole += (w as i128) * i128::from(unit);
                fraction += (f - w) * unit as f64;
            }
            Some(None) => {
                return fail(format!(
                    "unsupported type for timedelta component: {}",
                    v.map_or("None", |v| v.type_name())
                ));
            }
        }
    }
    let micros = delta::round_micros(fraction)?;
    Ok(Py::Delta(delta::checked(whole + i128::from(micros))?))
}

/// Python's `format(v, spec)`.
fn format_py(v: &Py<'_>, spec: &str) -> Result<String, EvalError> {
    use super::format::{Formattable, format_value};
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
fn py_repr(v: &Py<'_>) -> String {
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
enum Num {
    I(i64),
    F(f64),
    /// A `decimal.Decimal` (a non-integral number of the record, or a result computed from one).
    D(Dec),
}

fn num(v: &Py<'_>) -> Option<Num> {
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

fn as_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
        Num::D(d) => d.to_f64(),
    }
}

/// A decimal result as a value.
fn dec<'a>(r: Result<Dec, super::decimal::DecError>) -> Result<Py<'a>, EvalError> {
    match r {
        Ok(d) => Ok(Py::Dec(Cow::Owned(d.to_string()))),
        Err(e) => fail(e.to_string()),
    }
}

/// Compares numbers the way Python does: exactly, also between a `Decimal` and a float.
fn num_cmp(x: &Num, y: &Num) -> Option<Ordering> {
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

fn seq<'a>(v: &Py<'a>) -> Option<Vec<Py<'a>>> {
    match v {
        Py::List(l) => Some(l.clone()),
        Py::JArr(a) => Some(a.iter().map(from_json).collect()),
        _ => None,
    }
}

fn py_eq(a: &Py<'_>, b: &Py<'_>) -> bool {
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

fn dict_of<'a>(v: &Py<'a>) -> Option<IndexMap<Key, Py<'a>>> {
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

fn py_cmp(a: &Py<'_>, b: &Py<'_>) -> Result<Ordering, EvalError> {
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

fn seq_cmp(x: &[Py<'_>], y: &[Py<'_>]) -> Result<Ordering, EvalError> {
    for (p, q) in x.iter().zip(y) {
        if !py_eq(p, q) {
            return py_cmp(p, q);
        }
    }
    Ok(x.len().cmp(&y.len()))
}

fn key_of(v: &Py<'_>) -> Result<Key, EvalError> {
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

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    (0..len).contains(&j).then_some(j as usize)
}

fn slice_indices(len: usize, start: Option<i64>, stop: Option<i64>, step: i64) -> Vec<usize> {
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

/// The interpreter for one evaluation: counts steps and allocated bytes.
pub(crate) struct Interp<'c, 'a> {
    ctx: &'c Context<'a>,
    steps: u64,
    alloc: usize,
    locals: Vec<Py<'a>>,
}

enum Acc<'a> {
    List(Vec<Py<'a>>),
    Dict(IndexMap<Key, Py<'a>>),
}

impl<'c, 'a> Interp<'c, 'a> {
    pub(crate) fn new(ctx: &'c Context<'a>, slots: usize) -> Self {
        Interp {
            ctx,
            steps: 0,
            alloc: 0,
            locals: vec![Py::None; slots],
        }
    }

    fn step(&mut self) -> Result<(), EvalError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(EvalError::Limit(format!(
                "the expression took more than {MAX_STEPS} steps"
            )));
        }
        Ok(())
    }

    fn charge(&mut self, bytes: usize) -> Result<(), EvalError> {
        self.alloc = self.alloc.saturating_add(bytes);
        if self.alloc > MAX_ALLOC {
            return Err(EvalError::Limit(format!(
                "the expression allocated more than {} MiB",
                MAX_ALLOC / (1024 * 1024)
            )));
        }
        Ok(())
    }

    fn string(&mut self, s: String) -> Result<Py<'a>, EvalError> {
        self.charge(s.len())?;
        Ok(Py::Str(Cow::Owned(s)))
    }

    pub(crate) fn eval(&mut self, node: &'a Node) -> Result<Py<'a>, EvalError> {
        self.step()?;
        Ok(match node {
            Node::Const(c) => match c {
                Const::None => Py::None,
                Const::Bool(b) => Py::Bool(*b),
                Const::Int(i) => Py::Int(*i),
                Const::Float(f) => Py::Float(*f),
                Const::Str(s) => Py::Str(Cow::Borrowed(s)),
            },
            Node::Name(n) => return Err(EvalError::NameNotDefined(n.clone())),
            Node::Prop(p) => match self.ctx.record.get(p) {
                Some(v) => from_json(v),
                None => return Err(EvalError::NameNotDefined(p.clone())),
            },
            Node::Global(g) => self.global(*g)?,
            Node::Local(i) => self.locals[*i].clone(),
            Node::Attr(obj, name) => {
                let o = self.eval(obj)?;
                self.attr(o, name)?
            }
            Node::Call(f, args, kwargs) => {
                let mut a = Vec::with_capacity(args.len());
                let target = if let Node::Attr(obj, name) = f.as_ref() {
                    let o = self.eval(obj)?;
                    if matches!(o, Py::Global(g) if g != Global::Fake) {
                        Err(self.attr(o, name)?)
                    } else {
                        Ok((o, name))
                    }
                } else {
                    Err(self.eval(f)?)
                };
                for x in args {
                    a.push(self.eval(x)?);
                }
                let mut kw = Vec::with_capacity(kwargs.len());
                for (k, x) in kwargs {
                    kw.push((k.as_str(), self.eval(x)?));
                }
                match target {
                    Ok((obj, name)) => self.method(obj, name, a, kw)?,
                    Err(Py::Global(g)) => self.call(g, a, kw)?,
                    Err(other) => {
                        return fail(format!("'{}' object is not callable", other.type_name()));
                    }
                }
            }
            Node::Index(obj, idx) => {
                let o = self.eval(obj)?;
                let i = self.eval(idx)?;
                self.index(o, i)?
            }
            Node::Slice(obj, parts) => {
                let o = self.eval(obj)?;
                let mut bounds = [None, None, None];
                for (b, p) in bounds.iter_mut().zip(parts) {
                    if let Some(p) = p {
                        match self.eval(p)? {
                            Py::None => {}
                            Py::Int(i) => *b = Some(i),
                            other => {
                                return fail(format!(
                                    "slice indices must be integers, not {}",
                                    other.type_name()
                                ));
                            }
                        }
                    }
                }
                let step = bounds[2].unwrap_or(1);
                if step == 0 {
                    return fail("slice step cannot be zero");
                }
                match o {
                    Py::Str(s) => {
                        let chars: Vec<char> = s.chars().collect();
                        let out: String = slice_indices(chars.len(), bounds[0], bounds[1], step)
                            .into_iter()
                            .map(|i| chars[i])
                            .collect();
                        self.string(out)?
                    }
                    Py::Tuple(t) => Py::Tuple(
                        slice_indices(t.len(), bounds[0], bounds[1], step)
                            .into_iter()
                            .map(|i| t[i].clone())
                            .collect(),
                    ),
                    other => match seq(&other) {
                        Some(items) => {
                            let idx = slice_indices(items.len(), bounds[0], bounds[1], step);
                            self.charge(idx.len() * 16)?;
                            Py::List(idx.into_iter().map(|i| items[i].clone()).collect())
                        }
                        None => {
                            return fail(format!(
                                "'{}' object is not subscriptable",
                                other.type_name()
                            ));
                        }
                    },
                }
            }
            Node::Neg(x) => match self.eval(x)? {
                Py::Bool(b) => Py::Int(-i64::from(b)),
                Py::Delta(d) => Py::Delta(delta::checked(-i128::from(d))?),
                Py::Int(i) => Py::Int(i.checked_neg().ok_or_else(overflow)?),
                v => match num(&v) {
                    Some(Num::D(d)) => dec(d.neg())?,
                    Some(n) => Py::Float(-as_f64(n)),
                    None => {
                        return fail(format!("bad operand type for unary -: '{}'", v.type_name()));
                    }
                },
            },
            Node::Pos(x) => {
                let v = self.eval(x)?;
                if num(&v).is_none() && !matches!(v, Py::Delta(_)) {
                    return fail(format!("bad operand type for unary +: '{}'", v.type_name()));
                }
                v
            }
            Node::Not(x) => Py::Bool(!self.eval(x)?.truthy()),
            Node::And(a, b) => {
                let l = self.eval(a)?;
                if !l.truthy() { l } else { self.eval(b)? }
            }
            Node::Or(a, b) => {
                let l = self.eval(a)?;
                if l.truthy() { l } else { self.eval(b)? }
            }
            Node::IfElse(c, t, e) => {
                if self.eval(c)?.truthy() {
                    self.eval(t)?
                } else {
                    self.eval(e)?
                }
            }
            Node::Bin(op, a, b) => {
                let l = self.eval(a)?;
                let r = self.eval(b)?;
                self.binop(*op, l, r)?
            }
            Node::Cmp(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, n) in rest {
                    let right = self.eval(n)?;
                    if !self.compare(*op, &left, &right)? {
                        return Ok(Py::Bool(false));
                    }
                    left = right;
                }
                Py::Bool(true)
            }
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                self.charge(out.len() * 16)?;
                match node {
                    Node::List(_) => Py::List(out),
                    Node::Tuple(_) => Py::Tuple(out),
                    _ => dedup(out)?,
                }
            }
            Node::Dict(items) => {
                let mut d = IndexMap::new();
                for (k, v) in items {
                    let key = key_of(&self.eval(k)?)?;
                    let val = self.eval(v)?;
                    d.insert(key, val);
                }
                self.charge(d.len() * 32)?;
                Py::Dict(d)
            }
            Node::ListComp(elt, gens) | Node::SetComp(elt, gens) => {
                let mut acc = Acc::List(Vec::new());
                self.comprehension(gens, 0, elt, None, &mut acc)?;
                let Acc::List(items) = acc else {
                    unreachable!("a list accumulator stays a list")
                };
                if matches!(node, Node::SetComp(..)) {
                    dedup(items)?
                } else {
                    Py::List(items)
                }
            }
            Node::DictComp(k, v, gens) => {
                let mut acc = Acc::Dict(IndexMap::new());
                self.comprehension(gens, 0, k, Some(v), &mut acc)?;
                let Acc::Dict(d) = acc else {
                    unreachable!("a dict accumulator stays a dict")
                };
                Py::Dict(d)
            }
        })
    }

    fn comprehension(
        &mut self,
        gens: &'a [Generator],
        i: usize,
        elt: &'a Node,
        value: Option<&'a Node>,
        acc: &mut Acc<'a>,
    ) -> Result<(), EvalError> {
        let Some(g) = gens.get(i) else {
            let e = self.eval(elt)?;
            self.charge(32)?;
            match acc {
                Acc::List(l) => l.push(e),
                Acc::Dict(d) => {
                    let v = self.eval(value.expect("dict comprehensions have a value"))?;
                    d.insert(key_of(&e)?, v);
                }
            }
            return Ok(());
        };
        let iterable = self.eval(&g.iter)?;
        'items: for item in self.iterate(iterable)? {
            self.step()?;
            self.assign(&g.target, item)?;
            for c in &g.conds {
                if !self.eval(c)?.truthy() {
                    continue 'items;
                }
            }
            self.comprehension(gens, i + 1, elt, value, acc)?;
        }
        Ok(())
    }

    fn assign(&mut self, target: &Target, value: Py<'a>) -> Result<(), EvalError> {
        match target {
            Target::Slot(i) => self.locals[*i] = value,
            Target::Name(n) => return fail(format!("unresolved name `{n}`")),
            Target::Tuple(ts) => {
                let items = self.iterate(value)?;
                if items.len() != ts.len() {
                    return fail(format!(
                        "cannot unpack {} values into {} names",
                        items.len(),
                        ts.len()
                    ));
                }
                for (t, v) in ts.iter().zip(items) {
                    self.assign(t, v)?;
                }
            }
        }
        Ok(())
    }

    fn iterate(&mut self, v: Py<'a>) -> Result<Vec<Py<'a>>, EvalError> {
        Ok(match v {
            Py::List(l) | Py::Tuple(l) => l,
            Py::JArr(a) => a.iter().map(from_json).collect(),
            Py::Dict(d) => d.keys().map(Key::to_py).collect(),
            Py::JObj(o) => o
                .keys()
                .map(|k| Py::Str(Cow::Borrowed(k.as_str())))
                .collect(),
            Py::Str(s) => {
                self.charge(s.len() * 24)?;
                s.chars()
                    .map(|c| Py::Str(Cow::Owned(c.to_string())))
                    .collect()
            }
            other => return fail(format!("'{}' object is not iterable", other.type_name())),
        })
    }

    fn global(&mut self, g: Global) -> Result<Py<'a>, EvalError> {
        let ctx = self.ctx;
        Ok(match g {
            Global::Record => Py::JObj(ctx.record),
            Global::SelfValue => match ctx.property.and_then(|p| ctx.record.get(p)) {
                Some(v) => from_json(v),
                None => return Err(EvalError::NameNotDefined("self".into())),
            },
            Global::Config => from_json(ctx.config),
            Global::StreamName => Py::Str(Cow::Borrowed(ctx.stream_name)),
            Global::OriginalStreamName => Py::Str(Cow::Borrowed(ctx.original_stream_name)),
            Global::Fake if ctx.fake.is_none() => {
                return Err(EvalError::NameNotDefined("fake".into()));
            }
            other => Py::Global(other),
        })
    }

    fn attr(&mut self, obj: Py<'a>, name: &str) -> Result<Py<'a>, EvalError> {
        Ok(match (&obj, name) {
            (Py::Global(Global::Datetime), "datetime") => Py::Global(Global::DatetimeClass),
            (Py::Global(Global::Datetime), "date") => Py::Global(Global::DateClass),
            (Py::Global(Global::Datetime), "timedelta") => Py::Global(Global::DeltaClass),
            (Py::Delta(d), _) => {
                let (days, seconds, micros) = delta::parts(*d);
                match name {
                    "days" => Py::Int(days),
                    "seconds" => Py::Int(seconds),
                    "microseconds" => Py::Int(micros),
                    _ => return no_attr(&obj, name),
                }
            }
            (Py::Global(Global::Json), "dumps") => Py::Global(Global::Func(Func::JsonDumps)),
            (Py::Global(Global::Json), "loads") => Py::Global(Global::Func(Func::JsonLoads)),
            (Py::Global(Global::DatetimeClass), "fromisoformat") => {
                Py::Global(Global::Func(Func::DtFromIso))
            }
            (Py::Global(Global::DatetimeClass), "strptime") => {
                Py::Global(Global::Func(Func::DtStrptime))
            }
            (Py::Global(Global::DatetimeClass), "now") => Py::Global(Global::Func(Func::DtNow)),
            (Py::Global(Global::DatetimeClass), "utcnow") => {
                Py::Global(Global::Func(Func::DtUtcNow))
            }
            (Py::Global(Global::DateClass), "fromisoformat") => {
                Py::Global(Global::Func(Func::DateFromIso))
            }
            (Py::Global(Global::DateClass), "today") => Py::Global(Global::Func(Func::DateToday)),
            (Py::Date(d), _) => match name {
                "year" => Py::Int(i64::from(d.year())),
                "month" => Py::Int(i64::from(d.month())),
                "day" => Py::Int(i64::from(d.day())),
                _ => return no_attr(&obj, name),
            },
            (Py::DateTime(dt, _), _) => match name {
                "year" => Py::Int(i64::from(dt.year())),
                "month" => Py::Int(i64::from(dt.month())),
                "day" => Py::Int(i64::from(dt.day())),
                "hour" => Py::Int(i64::from(dt.hour())),
                "minute" => Py::Int(i64::from(dt.minute())),
                "second" => Py::Int(i64::from(dt.second())),
                "microsecond" => Py::Int(i64::from(dt.and_utc().timestamp_subsec_micros())),
                _ => return no_attr(&obj, name),
            },
            _ => return no_attr(&obj, name),
        })
    }

    fn index(&mut self, obj: Py<'a>, idx: Py<'a>) -> Result<Py<'a>, EvalError> {
        match (&obj, &idx) {
            (Py::JObj(o), _) => {
                let Py::Str(k) = &idx else {
                    return fail(format!("KeyError: {}", py_repr(&idx)));
                };
                match o.get(k.as_ref()) {
                    Some(v) => Ok(from_json(v)),
                    None => fail(format!("KeyError: {}", py_repr(&idx))),
                }
            }
            (Py::Dict(d), _) => match d.get(&key_of(&idx)?) {
                Some(v) => Ok(v.clone()),
                None => fail(format!("KeyError: {}", py_repr(&idx))),
            },
            (_, Py::Int(_) | Py::Bool(_)) => {
                let Some(Num::I(i)) = num(&idx) else {
                    unreachable!("ints and bools are integers")
                };
                match &obj {
                    Py::Str(s) => {
                        let n = s.chars().count();
                        match norm_index(i, n).and_then(|j| s.chars().nth(j)) {
                            Some(c) => Ok(Py::Str(Cow::Owned(c.to_string()))),
                            None => fail("IndexError: string index out of range"),
                        }
                    }
                    Py::JArr(a) => {
                        norm_index(i, a.len())
                            .map(|j| from_json(&a[j]))
                            .ok_or_else(|| {
                                EvalError::Failed("IndexError: list index out of range".into())
                            })
                    }
                    Py::List(l) | Py::Tuple(l) => {
                        norm_index(i, l.len()).map(|j| l[j].clone()).ok_or_else(|| {
                            EvalError::Failed("IndexError: list index out of range".into())
                        })
                    }
                    other => fail(format!(
                        "'{}' object is not subscriptable",
                        other.type_name()
                    )),
                }
            }
            _ => fail(format!(
                "{} indices must be integers, not {}",
                obj.type_name(),
                idx.type_name()
            )),
        }
    }

    fn compare(&mut self, op: CmpOp, a: &Py<'a>, b: &Py<'a>) -> Result<bool, EvalError> {
        Ok(match op {
            CmpOp::Eq => py_eq(a, b),
            CmpOp::Ne => !py_eq(a, b),
            CmpOp::Lt => py_cmp(a, b)? == Ordering::Less,
            CmpOp::Le => py_cmp(a, b)? != Ordering::Greater,
            CmpOp::Gt => py_cmp(a, b)? == Ordering::Greater,
            CmpOp::Ge => py_cmp(a, b)? != Ordering::Less,
            CmpOp::In => self.contains(b, a)?,
            CmpOp::NotIn => !self.contains(b, a)?,
            CmpOp::Is => is_same(a, b),
            CmpOp::IsNot => !is_same(a, b),
        })
    }

    fn contains(&mut self, container: &Py<'a>, item: &Py<'a>) -> Result<bool, EvalError> {
        Ok(match container {
            Py::Str(s) => match item {
                Py::Str(i) => s.contains(i.as_ref()),
                other => {
                    return fail(format!(
                        "'in <string>' requires string as left operand, not {}",
                        other.type_name()
                    ));
                }
            },
            Py::JObj(o) => matches!(item, Py::Str(k) if o.contains_key(k.as_ref())),
            Py::Dict(d) => d.contains_key(&key_of(item)?),
            Py::List(l) | Py::Tuple(l) => l.iter().any(|x| py_eq(x, item)),
            Py::JArr(a) => a.iter().any(|x| py_eq(&from_json(x), item)),
            other => {
                return fail(format!(
                    "argument of type '{}' is not iterable",
                    other.type_name()
                ));
            }
        })
    }

    fn binop(&mut self, op: BinOp, l: Py<'a>, r: Py<'a>) -> Result<Py<'a>, EvalError> {
        if let (Some(x), Some(y)) = (num(&l), num(&r)) {
            return arith(op, x, y);
        }
        match (op, &l, &r) {
            (BinOp::Add, Py::Str(a), Py::Str(b)) => {
                let mut s = String::with_capacity(a.len() + b.len());
                s.push_str(a);
                s.push_str(b);
                self.string(s)
            }
            (BinOp::Mul, Py::Str(s), Py::Int(n)) | (BinOp::Mul, Py::Int(n), Py::Str(s)) => {
                let n = (*n).max(0) as usize;
                self.charge(s.len().saturating_mul(n))?;
                Ok(Py::Str(Cow::Owned(s.repeat(n))))
            }
            (BinOp::Add, Py::Tuple(a), Py::Tuple(b)) => {
                self.charge((a.len() + b.len()) * 16)?;
                Ok(Py::Tuple(a.iter().chain(b).cloned().collect()))
            }
            (BinOp::Add, _, _) if seq(&l).is_some() && seq(&r).is_some() => {
                let mut a = seq(&l).expect("checked");
                let b = seq(&r).expect("checked");
                self.charge((a.len() + b.len()) * 16)?;
                a.extend(b);
                Ok(Py::List(a))
            }
            (BinOp::Mul, _, Py::Int(n)) if seq(&l).is_some() => {
                let a = seq(&l).expect("checked");
                let n = (*n).max(0) as usize;
                self.charge(a.len().saturating_mul(n).saturating_mul(16))?;
                Ok(Py::List(
                    a.iter().cycle().take(a.len() * n).cloned().collect(),
                ))
            }
            (BinOp::Add, Py::DateTime(dt, off), Py::Delta(d))
            | (BinOp::Add, Py::Delta(d), Py::DateTime(dt, off)) => {
                Ok(Py::DateTime(delta::shift(dt, *d)?, *off))
            }
            (BinOp::Sub, Py::DateTime(dt, off), Py::Delta(d)) => Ok(Py::DateTime(
                delta::shift(dt, d.checked_neg().ok_or_else(overflow)?)?,
                *off,
            )),
            (BinOp::Add, Py::Date(day), Py::Delta(d))
            | (BinOp::Add, Py::Delta(d), Py::Date(day)) => {
                Ok(Py::Date(delta::shift_date(day, *d)?))
            }
            (BinOp::Sub, Py::Date(day), Py::Delta(d)) => Ok(Py::Date(delta::shift_date(
                day,
                d.checked_neg().ok_or_else(overflow)?,
            )?)),
            (BinOp::Sub, Py::DateTime(a, o), Py::DateTime(b, p)) => match (o, p) {
                (None, None) => Ok(Py::Delta(delta::between(a, b)?)),
                (Some(o), Some(p)) => Ok(Py::Delta(delta::between(&(*a - *o), &(*b - *p))?)),
                _ => fail("can't subtract offset-naive and offset-aware datetimes"),
            },
            (BinOp::Sub, Py::Date(a), Py::Date(b)) => Ok(Py::Delta(delta::between(
                &a.and_hms_opt(0, 0, 0).expect("midnight exists"),
                &b.and_hms_opt(0, 0, 0).expect("midnight exists"),
            )?)),
            (BinOp::Add, Py::Delta(a), Py::Delta(b)) => {
                Ok(Py::Delta(delta::checked(i128::from(*a) + i128::from(*b))?))
            }
            (BinOp::Sub, Py::Delta(a), Py::Delta(b)) => {
                Ok(Py::Delta(delta::checked(i128::from(*a) - i128::from(*b))?))
            }
            (BinOp::Mul, Py::Delta(d), n) | (BinOp::Mul, n, Py::Delta(d)) if num(n).is_some() => {
                match num(n).expect("checked") {
                    Num::I(i) => Ok(Py::Delta(delta::checked(i128::from(*d) * i128::from(i))?)),
                    Num::F(f) => Ok(Py::Delta(delta::round_micros(*d as f64 * f)?)),
                    Num::D(_) => fail(format!(
                        "unsupported operand type(s) for *: '{}' and '{}'",
                        l.type_name(),
                        r.type_name()
                    )),
                }
            }
            (BinOp::Div, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("division by zero");
                }
                Ok(Py::Float(*a as f64 / *b as f64))
            }
            (BinOp::FloorDiv, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("integer division or modulo by zero");
                }
                Ok(Py::Int(
                    a.div_euclid(*b) - i64::from(a.rem_euclid(*b) != 0 && *b < 0),
                ))
            }
            (BinOp::Mod, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("integer division or modulo by zero");
                }
                // Python's modulo takes the sign of the divisor.
                Ok(Py::Delta(((a % b) + b) % b))
            }
            (BinOp::Div | BinOp::FloorDiv, Py::Delta(d), n) if num(n).is_some() => {
                match (op, num(n).expect("checked")) {
                    (_, Num::D(_)) => fail(format!(
                        "unsupported operand type(s) for {}: 'datetime.timedelta' and 'decimal.Decimal'",
                        op_symbol(op)
                    )),
                    (_, Num::I(0)) => fail("integer division or modulo by zero"),
                    (_, Num::F(0.0)) => fail("division by zero"),
                    (BinOp::FloorDiv, Num::I(i)) => Ok(Py::Delta(
                        d.div_euclid(i) - i64::from(d.rem_euclid(i) != 0 && i < 0),
                    )),
                    (BinOp::FloorDiv, Num::F(_)) => {
                        fail("unsupported operand type(s) for //: 'datetime.timedelta' and 'float'")
                    }
                    (_, Num::I(i)) => Ok(Py::Delta(delta::round_micros(*d as f64 / i as f64)?)),
                    (_, Num::F(f)) => Ok(Py::Delta(delta::round_micros(*d as f64 / f)?)),
                }
            }
            (BinOp::Add | BinOp::Sub, Py::DateTime(..) | Py::Date(_) | Py::Delta(_), _)
            | (BinOp::Sub, _, Py::DateTime(..) | Py::Date(_) | Py::Delta(_)) => fail(format!(
                "unsupported operand type(s) for {}: '{}' and '{}'",
                op_symbol(op),
                l.type_name(),
                r.type_name()
            )),
            _ => fail(format!(
                "unsupported operand type(s) for {}: '{}' and '{}'",
                op_symbol(op),
                l.type_name(),
                r.type_name()
            )),
        }
    }

    fn call(
        &mut self,
        g: Global,
        mut args: Vec<Py<'a>>,
        kw: Vec<(&str, Py<'a>)>,
    ) -> Result<Py<'a>, EvalError> {
        if matches!(g, Global::DatetimeClass | Global::DateClass) {
            return construct_datetime(g == Global::DatetimeClass, args, &kw);
        }
        if g == Global::DeltaClass {
            return construct_delta(&args, &kw);
        }
        let Global::Func(f) = g else {
            return fail(format!("'{}' is not callable", g.name()));
        };
        if f != Func::JsonDumps
            && f != Func::Sorted
            && f != Func::Min
            && f != Func::Max
            && !kw.is_empty()
        {
            return fail(format!("{f:?}() takes no keyword arguments").to_lowercase());
        }
        let argc = args.len();
        let arity = |lo: usize, hi: usize, name: &str| -> Result<(), EvalError> {
            if argc < lo || argc > hi {
                fail(format!(
                    "{name}() takes {lo} to {hi} arguments ({argc} given)"
                ))
            } else {
                Ok(())
            }
        };
        let mut it = args.drain(..);
        let mut arg = || it.next().expect("arity was checked");
        Ok(match f {
            Func::Int => {
                arity(0, 1, "int")?;
                if argc == 0 {
                    return Ok(Py::Int(0));
                }
                to_int(arg())?
            }
            Func::Float => {
                arity(0, 1, "float")?;
                if argc == 0 {
                    return Ok(Py::Float(0.0));
                }
                to_float(arg())?
            }
            Func::Str => {
                arity(0, 1, "str")?;
                if argc == 0 {
                    return Ok(Py::Str(Cow::Borrowed("")));
                }
                let v = arg();
                if let Py::Str(s) = v {
                    return Ok(Py::Str(s));
                }
                let s = py_str(&v);
                self.string(s)?
            }
            Func::Bool => {
                arity(0, 1, "bool")?;
                Py::Bool(argc == 1 && arg().truthy())
            }
            Func::Len => {
                arity(1, 1, "len")?;
                Py::Int(match arg() {
                    Py::Str(s) => s.chars().count(),
                    Py::JArr(a) => a.len(),
                    Py::JObj(o) => o.len(),
                    Py::List(l) | Py::Tuple(l) => l.len(),
                    Py::Dict(d) => d.len(),
                    other => {
                        return fail(format!(
                            "object of type '{}' has no len()",
                            other.type_name()
                        ));
                    }
                } as i64)
            }
            Func::Format => {
                arity(1, 3, "format")?;
                let v = arg();
                let mut text = |what: &str| -> Result<String, EvalError> {
                    match it.next() {
                        None => Ok(String::new()),
                        Some(Py::Str(s)) => Ok(s.into_owned()),
                        Some(other) => fail(format!(
                            "format() {what} must be str, not {}",
                            other.type_name()
                        )),
                    }
                };
                let spec = text("argument 2")?;
                let conversion = text("conversion")?;
                let v = match conversion.as_str() {
                    "r" | "a" => Py::Str(Cow::Owned(py_repr(&v))),
                    "s" => Py::Str(Cow::Owned(py_str(&v))),
                    _ => v,
                };
                let s = format_py(&v, &spec)?;
                return self.string(s);
            }
            Func::Md5 | Func::Sha256 => {
                arity(1, 1, "md5")?;
                let v = arg();
                let Py::Str(s) = &v else {
                    return fail(format!(
                        "{}() needs a string, not '{}'",
                        if f == Func::Md5 { "md5" } else { "sha256" },
                        v.type_name()
                    ));
                };
                // Hex digits written into one buffer (`hex::encode` collects them a char at a
                // time).
                let mut hex = [0u8; 64];
                let n = if f == Func::Md5 {
                    let digest = md5::Md5::digest(s.as_bytes());
                    hex::encode_to_slice(digest, &mut hex[..32]).map(|()| 32)
                } else {
                    let digest = sha2::Sha256::digest(s.as_bytes());
                    hex::encode_to_slice(digest, &mut hex).map(|()| 64)
                }
                .expect("the buffer fits the digest");
                let hex = std::str::from_utf8(&hex[..n]).expect("hex digits are ASCII");
                Py::Str(Cow::Owned(hex.to_owned()))
            }
            Func::List | Func::Tuple | Func::Set => {
                arity(0, 1, "list")?;
                let items = if argc == 0 {
                    Vec::new()
                } else {
                    self.iterate(arg())?
                };
                self.charge(items.len() * 16)?;
                match f {
                    Func::List => Py::List(items),
                    Func::Tuple => Py::Tuple(items),
                    _ => dedup(items)?,
                }
            }
            Func::Dict => {
                arity(0, 1, "dict")?;
                if argc == 0 {
                    return Ok(Py::Dict(IndexMap::new()));
                }
                let v = arg();
                if let Some(d) = dict_of(&v) {
                    return Ok(Py::Dict(d));
                }
                let mut d = IndexMap::new();
                for pair in self.iterate(v)? {
                    let kv = self.iterate(pair)?;
                    let [k, v]: [Py<'a>; 2] = kv
                        .try_into()
                        .map_err(|_| EvalError::Failed("dict() needs pairs".into()))?;
                    d.insert(key_of(&k)?, v);
                }
                self.charge(d.len() * 32)?;
                Py::Dict(d)
            }
            Func::Min | Func::Max | Func::Sorted => {
                let items = if argc == 1 {
                    self.iterate(arg())?
                } else {
                    args_rest(&mut arg, argc)
                };
                let reverse = kw.iter().any(|(k, v)| *k == "reverse" && v.truthy());
                if let Some((k, _)) = kw.iter().find(|(k, _)| *k != "reverse" && *k != "default") {
                    return fail(format!("unsupported keyword argument `{k}`"));
                }
                let mut sorted = items;
                let mut err = None;
                sorted.sort_by(|a, b| {
                    py_cmp(a, b).unwrap_or_else(|e| {
                        err.get_or_insert(e);
                        Ordering::Equal
                    })
                });
                if let Some(e) = err {
                    return Err(e);
                }
                match f {
                    Func::Sorted => {
                        if reverse {
                            sorted.reverse();
                        }
                        Py::List(sorted)
                    }
                    _ if sorted.is_empty() => match kw.into_iter().find(|(k, _)| *k == "default") {
                        Some((_, d)) => d,
                        None => return fail("min()/max() arg is an empty sequence"),
                    },
                    Func::Min => sorted.swap_remove(0),
                    _ => sorted.pop().expect("not empty"),
                }
            }
            Func::Abs => {
                arity(1, 1, "abs")?;
                let v = arg();
                if let Py::Delta(d) = v {
                    return Ok(Py::Delta(delta::checked(i128::from(d).abs())?));
                }
                match num(&v) {
                    Some(Num::I(i)) => Py::Int(i.checked_abs().ok_or_else(overflow)?),
                    Some(Num::F(x)) => Py::Float(x.abs()),
                    Some(Num::D(d)) => dec(d.abs())?,
                    None => return fail("bad operand type for abs()"),
                }
            }
            Func::Round => {
                arity(1, 2, "round")?;
                let x = num(&arg())
                    .ok_or_else(|| EvalError::Failed("round() needs a number".into()))?;
                let nd = if argc == 2 {
                    Some(to_i64(&arg())?)
                } else {
                    None
                };
                match (x, nd) {
                    (Num::I(i), _) => Py::Int(i),
                    (Num::D(d), None) => Py::Int(d.round_int().ok_or_else(overflow)?),
                    (Num::D(d), Some(n)) => dec(d.round_to(n))?,
                    (Num::F(x), None) => Py::Int(float_to_int(x.round_ties_even())?),
                    (Num::F(x), Some(n)) => {
                        let p = 10f64.powi(n.clamp(-300, 300) as i32);
                        Py::Float((x * p).round_ties_even() / p)
                    }
                }
            }
            Func::Sum => {
                arity(1, 2, "sum")?;
                let items = self.iterate(arg())?;
                let mut total = if argc == 2 {
                    num(&arg()).unwrap_or(Num::I(0))
                } else {
                    Num::I(0)
                };
                for i in items {
                    let n = num(&i).ok_or_else(|| {
                        EvalError::Failed(format!(
                            "unsupported operand type(s) for +: '{}'",
                            i.type_name()
                        ))
                    })?;
                    let sum = arith(BinOp::Add, total, n)?;
                    total = num(&sum).expect("number arithmetic gives numbers");
                }
                match total {
                    Num::I(i) => Py::Int(i),
                    Num::F(f) => Py::Float(f),
                    Num::D(d) => dec(Ok(d))?,
                }
            }
            Func::Any | Func::All => {
                arity(1, 1, "any")?;
                let items = self.iterate(arg())?;
                Py::Bool(if f == Func::Any {
                    items.iter().any(Py::truthy)
                } else {
                    items.iter().all(Py::truthy)
                })
            }
            Func::Range => {
                arity(1, 3, "range")?;
                let a: Vec<i64> = (0..argc)
                    .map(|_| to_i64(&arg()))
                    .collect::<Result<_, _>>()?;
                let (start, stop, step) = match a.as_slice() {
                    [e] => (0, *e, 1),
                    [s, e] => (*s, *e, 1),
                    [s, e, st] => (*s, *e, *st),
                    _ => unreachable!("arity was checked"),
                };
                if step == 0 {
                    return fail("range() arg 3 must not be zero");
                }
                // The exact length in 128 bits (no bound wraps), charged before anything is
                // allocated; each item is computed from its index (no step wraps).
                let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
                let span = if step > 0 { stop - start } else { start - stop };
                let len = if span <= 0 {
                    0
                } else {
                    (span + step.abs() - 1) / step.abs()
                };
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                self.charge(len.saturating_mul(std::mem::size_of::<Py<'_>>()))?;
                Py::List(
                    (0..len)
                        .map(|k| {
                            let i = start + step * k as i128;
                            Py::Int(i64::try_from(i).expect("between start and stop"))
                        })
                        .collect(),
                )
            }
            Func::Enumerate => {
                arity(1, 2, "enumerate")?;
                let items = self.iterate(arg())?;
                let start = if argc == 2 { to_i64(&arg())? } else { 0 };
                self.charge(items.len() * 48)?;
                Py::List(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| Py::Tuple(vec![Py::Int(start + i as i64), v]))
                        .collect(),
                )
            }
            Func::Zip => {
                let lists: Vec<Vec<Py<'a>>> = (0..argc)
                    .map(|_| arg())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|v| self.iterate(v))
                    .collect::<Result<_, _>>()?;
                let n = lists.iter().map(Vec::len).min().unwrap_or(0);
                self.charge(n * 16 * lists.len().max(1))?;
                Py::List(
                    (0..n)
                        .map(|i| Py::Tuple(lists.iter().map(|l| l[i].clone()).collect()))
                        .collect(),
                )
            }
            Func::JsonDumps => {
                arity(1, 1, "json.dumps")?;
                let mut opts = DumpOpts {
                    default_str: false,
                    sort_keys: false,
                    ensure_ascii: true,
                    item_sep: ", ".into(),
                    key_sep: ": ".into(),
                };
                for (k, v) in kw {
                    match k {
                        "default" => match v {
                            Py::Global(Global::Func(Func::Str)) => opts.default_str = true,
                            Py::None => {}
                            _ => return fail("json.dumps(default=…) supports only `str`"),
                        },
                        "sort_keys" => opts.sort_keys = v.truthy(),
                        "ensure_ascii" => opts.ensure_ascii = v.truthy(),
                        "separators" => {
                            let parts = self.iterate(v)?;
                            match parts.as_slice() {
                                [Py::Str(a), Py::Str(b)] => {
                                    opts.item_sep = a.to_string();
                                    opts.key_sep = b.to_string();
                                }
                                _ => return fail("json.dumps(separators=…) needs two strings"),
                            }
                        }
                        other => {
                            return fail(format!(
                                "json.dumps() keyword `{other}` is not supported"
                            ));
                        }
                    }
                }
                let mut out = String::new();
                self.dumps(&arg(), &opts, &mut out, 0)?;
                self.string(out)?
            }
            Func::JsonLoads => {
                arity(1, 1, "json.loads")?;
                let v = arg();
                let Py::Str(s) = &v else {
                    return fail(format!(
                        "the JSON object must be str, not {}",
                        v.type_name()
                    ));
                };
                self.charge(s.len().saturating_mul(4))?;
                let parsed: Value = serde_json::from_str(s)
                    .map_err(|e| EvalError::Failed(format!("JSONDecodeError: {e}")))?;
                from_json_owned(parsed)
            }
            Func::DtFromIso | Func::DateFromIso => {
                arity(1, 1, "fromisoformat")?;
                let v = arg();
                let Py::Str(s) = &v else {
                    return fail(format!(
                        "fromisoformat: argument must be str, not {}",
                        v.type_name()
                    ));
                };
                if f == Func::DateFromIso {
                    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                        Ok(d) if s.len() == 10 => Py::Date(d),
                        _ => return fail(format!("Invalid isoformat string: {}", py_repr(&v))),
                    }
                } else {
                    match parse_iso_datetime(s) {
                        Some((dt, off)) => Py::DateTime(dt, off),
                        None => return fail(format!("Invalid isoformat string: {}", py_repr(&v))),
                    }
                }
            }
            Func::DtStrptime => {
                arity(2, 2, "strptime")?;
                let (v, fmt) = (arg(), arg());
                let (Py::Str(s), Py::Str(fmt)) = (&v, &fmt) else {
                    return fail("strptime() arguments must be strings");
                };
                let cfmt = fmt.replace("%f", "%6f");
                if let Ok(dt) = DateTime::parse_from_str(s, &cfmt) {
                    Py::DateTime(dt.naive_local(), Some(*dt.offset()))
                } else if let Ok(dt) = NaiveDateTime::parse_from_str(s, &cfmt) {
                    Py::DateTime(dt, None)
                } else if let Ok(d) = NaiveDate::parse_from_str(s, &cfmt) {
                    Py::DateTime(d.and_hms_opt(0, 0, 0).expect("midnight exists"), None)
                } else {
                    return fail(format!(
                        "time data {} does not match format {}",
                        py_repr(&v),
                        py_repr(&Py::Str(fmt.clone()))
                    ));
                }
            }
            Func::DtNow | Func::DtUtcNow => {
                arity(0, 0, "now")?;
                Py::DateTime(chrono::Utc::now().naive_utc(), None)
            }
            Func::DateToday => {
                arity(0, 0, "today")?;
                Py::Date(chrono::Utc::now().date_naive())
            }
        })
    }

    fn dumps(
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
            Py::Str(s) => json_string(s, o.ensure_ascii, out),
            Py::Dec(_) | Py::Date(_) | Py::DateTime(..) | Py::Delta(_) | Py::Global(_) => {
                if o.default_str {
                    json_string(&py_str(v), o.ensure_ascii, out);
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
                    json_string(k, o.ensure_ascii, out);
                    out.push_str(&o.key_sep);
                    self.dumps(val, o, out, depth + 1)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    /// `template.format(*args, **kw)`: fields by automatic or explicit position, or by
    /// keyword.
    fn format_template(
        &mut self,
        template: &str,
        args: &[Py<'a>],
        kw: &[(&str, Py<'a>)],
    ) -> Result<Py<'a>, EvalError> {
        use super::format::{Piece, template_pieces};
        let pieces = template_pieces(template).map_err(EvalError::Failed)?;
        let mut out = String::new();
        let mut auto = 0;
        for piece in pieces {
            let (what, conversion, spec) = match piece {
                Piece::Text(t) => {
                    out.push_str(&t);
                    continue;
                }
                Piece::Field {
                    what,
                    conversion,
                    spec,
                } => (what, conversion, spec),
            };
            let value = if what.is_empty() {
                auto += 1;
                args.get(auto - 1).ok_or_else(|| {
                    EvalError::Failed(format!(
                        "Replacement index {} out of range for positional args tuple",
                        auto - 1
                    ))
                })?
            } else if let Ok(k) = what.parse::<usize>() {
                args.get(k).ok_or_else(|| {
                    EvalError::Failed(format!(
                        "Replacement index {k} out of range for positional args tuple"
                    ))
                })?
            } else if what.contains(['.', '[']) {
                return fail(format!(
                    "format field `{what}`: attributes and indexes in format fields are not supported"
                ));
            } else {
                kw.iter()
                    .find(|(n, _)| *n == what)
                    .map(|(_, v)| v)
                    .ok_or_else(|| EvalError::Failed(format!("KeyError: '{what}'")))?
            };
            let converted;
            let value = match conversion {
                Some('r' | 'a') => {
                    converted = Py::Str(Cow::Owned(py_repr(value)));
                    &converted
                }
                Some(_) => {
                    converted = Py::Str(Cow::Owned(py_str(value)));
                    &converted
                }
                None => value,
            };
            out.push_str(&format_py(value, &spec)?);
            if out.len() > MAX_ALLOC {
                return Err(EvalError::Limit(format!(
                    "the expression allocated more than {} MiB",
                    MAX_ALLOC / (1024 * 1024)
                )));
            }
        }
        self.string(out)
    }

    fn method(
        &mut self,
        obj: Py<'a>,
        name: &str,
        args: Vec<Py<'a>>,
        kw: Vec<(&str, Py<'a>)>,
    ) -> Result<Py<'a>, EvalError> {
        if let Py::Global(Global::Fake) = obj {
            let fake = self
                .ctx
                .fake
                .ok_or_else(|| EvalError::NameNotDefined("fake".into()))?;
            let mut faker = fake.borrow_mut();
            if name == "seed_instance" {
                let seed = args.first().map(py_str).unwrap_or_default();
                faker.seed_from_text(&seed);
                return Ok(Py::None);
            }
            let ints: Vec<i64> = args
                .iter()
                .filter_map(|a| match a {
                    Py::Int(i) => Some(*i),
                    _ => None,
                })
                .collect();
            return match faker.call(name, &ints) {
                Some(s) => self.string(s),
                None => fail(format!("fake.{name}() is not supported")),
            };
        }
        if name == "format"
            && let Py::Str(template) = &obj
        {
            return self.format_template(template, &args, &kw);
        }
        if let Py::Delta(d) = obj {
            if name != "total_seconds" {
                return no_attr(&obj, name);
            }
            if !args.is_empty() || !kw.is_empty() {
                return fail("total_seconds() takes no arguments");
            }
            return Ok(Py::Float(d as f64 / 1e6));
        }
        if !kw.is_empty() && !matches!(name, "split" | "rsplit" | "isoformat" | "get") {
            return fail(format!("{name}() takes no keyword arguments"));
        }
        let argc = args.len();
        let want = |lo: usize, hi: usize| -> Result<(), EvalError> {
            if argc < lo || argc > hi {
                fail(format!(
                    "{name}() takes {lo} to {hi} arguments ({argc} given)"
                ))
            } else {
                Ok(())
            }
        };
        match &obj {
            Py::Str(s) => {
                let s: &str = s;
                let str_arg = |i: usize| -> Result<Option<&Py<'a>>, EvalError> { Ok(args.get(i)) };
                let as_str = |v: Option<&Py<'a>>| -> Result<Option<String>, EvalError> {
                    match v {
                        None | Some(Py::None) => Ok(None),
                        Some(Py::Str(x)) => Ok(Some(x.to_string())),
                        Some(other) => {
                            fail(format!("must be str or None, not {}", other.type_name()))
                        }
                    }
                };
                let out = match name {
                    "lower" | "casefold" => {
                        want(0, 0)?;
                        s.to_lowercase()
                    }
                    "upper" => {
                        want(0, 0)?;
                        s.to_uppercase()
                    }
                    "strip" | "lstrip" | "rstrip" => {
                        want(0, 1)?;
                        let chars = as_str(str_arg(0)?)?;
                        let pred = |c: char| match &chars {
                            Some(cs) => cs.contains(c),
                            None => c.is_whitespace(),
                        };
                        match name {
                            "strip" => s.trim_matches(pred).to_string(),
                            "lstrip" => s.trim_start_matches(pred).to_string(),
                            _ => s.trim_end_matches(pred).to_string(),
                        }
                    }
                    "split" | "rsplit" => {
                        want(0, 2)?;
                        let mut sep = as_str(args.first())?;
                        let mut max = match args.get(1) {
                            Some(v) => to_i64(v)?,
                            None => -1,
                        };
                        for (k, v) in &kw {
                            match *k {
                                "sep" => sep = as_str(Some(v))?,
                                "maxsplit" => max = to_i64(v)?,
                                other => {
                                    return fail(format!(
                                        "split() got an unexpected keyword argument '{other}'"
                                    ));
                                }
                            }
                        }
                        // What the parts will take is charged before they are made.
                        let count = match sep.as_deref() {
                            Some("") | None => s.split_whitespace().count(),
                            Some(sep) => s.matches(sep).count() + 1,
                        };
                        let count = match usize::try_from(max) {
                            Ok(max) => count.min(max.saturating_add(1)),
                            Err(_) => count,
                        };
                        self.charge(
                            s.len()
                                + count.saturating_mul(
                                    std::mem::size_of::<Py<'_>>() + std::mem::size_of::<String>(),
                                ),
                        )?;
                        let parts = split(s, sep.as_deref(), max, name == "rsplit")?;
                        return Ok(Py::List(
                            parts.into_iter().map(|p| Py::Str(Cow::Owned(p))).collect(),
                        ));
                    }
                    "splitlines" => {
                        want(0, 0)?;
                        self.charge(
                            s.len()
                                + s.lines()
                                    .count()
                                    .saturating_mul(std::mem::size_of::<Py<'_>>()),
                        )?;
                        return Ok(Py::List(
                            s.lines()
                                .map(|p| Py::Str(Cow::Owned(p.to_string())))
                                .collect(),
                        ));
                    }
                    "replace" => {
                        want(2, 3)?;
                        let (Some(Some(old)), Some(Some(new))) =
                            (as_str(args.first()).ok(), as_str(args.get(1)).ok())
                        else {
                            return fail("replace() arguments must be str");
                        };
                        let count = match args.get(2) {
                            Some(v) => to_i64(v)?,
                            None => -1,
                        };
                        let n = if old.is_empty() {
                            s.chars().count() + 1
                        } else {
                            s.matches(old.as_str()).count()
                        };
                        self.charge(s.len().saturating_add(n.saturating_mul(new.len())))?;
                        if count < 0 {
                            s.replace(&old, &new)
                        } else {
                            s.replacen(&old, &new, count as usize)
                        }
                    }
                    "startswith" | "endswith" => {
                        want(1, 1)?;
                        let candidates = match &args[0] {
                            Py::Str(p) => vec![p.to_string()],
                            Py::Tuple(t) => t
                                .iter()
                                .map(|p| match p {
                                    Py::Str(x) => Ok(x.to_string()),
                                    o => fail(format!(
                                        "tuple for {name} must only contain str, not {}",
                                        o.type_name()
                                    )),
                                })
                                .collect::<Result<_, _>>()?,
                            o => {
                                return fail(format!(
                                    "{name} first arg must be str or a tuple of str, not {}",
                                    o.type_name()
                                ));
                            }
                        };
                        let hit = candidates.iter().any(|p| {
                            if name == "startswith" {
                                s.starts_with(p.as_str())
                            } else {
                                s.ends_with(p.as_str())
                            }
                        });
                        return Ok(Py::Bool(hit));
                    }
                    "find" | "rfind" | "index" | "count" => {
                        want(1, 1)?;
                        let Some(sub) = as_str(args.first())? else {
                            return fail(format!("{name}() argument must be str"));
                        };
                        if name == "count" {
                            return Ok(Py::Int(if sub.is_empty() {
                                s.chars().count() + 1
                            } else {
                                s.matches(sub.as_str()).count()
                            } as i64));
                        }
                        let pos = if name == "rfind" {
                            s.rfind(sub.as_str())
                        } else {
                            s.find(sub.as_str())
                        };
                        return match pos {
                            Some(b) => Ok(Py::Int(s[..b].chars().count() as i64)),
                            None if name == "index" => fail("substring not found"),
                            None => Ok(Py::Int(-1)),
                        };
                    }
                    "join" => {
                        want(1, 1)?;
                        let items = self.iterate(args.into_iter().next().expect("one argument"))?;
                        let mut out = String::new();
                        for (i, it) in items.iter().enumerate() {
                            let Py::Str(x) = it else {
                                return fail(format!(
                                    "sequence item {i}: expected str instance, {} found",
                                    it.type_name()
                                ));
                            };
                            if i > 0 {
                                out.push_str(s);
                            }
                            out.push_str(x);
                            if out.len() > MAX_ALLOC {
                                return Err(EvalError::Limit("joined string is too large".into()));
                            }
                        }
                        out
                    }
                    "title" => {
                        want(0, 0)?;
                        title(s)
                    }
                    "capitalize" => {
                        want(0, 0)?;
                        let mut c = s.chars();
                        match c.next() {
                            Some(f) => f
                                .to_uppercase()
                                .chain(c.as_str().to_lowercase().chars())
                                .collect(),
                            None => String::new(),
                        }
                    }
                    "isdigit" | "isdecimal" | "isnumeric" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(!s.is_empty() && s.chars().all(|c| c.is_numeric())));
                    }
                    "isalpha" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_alphabetic),
                        ));
                    }
                    "isalnum" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_alphanumeric),
                        ));
                    }
                    "isspace" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_whitespace),
                        ));
                    }
                    "islower" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase),
                        ));
                    }
                    "isupper" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase),
                        ));
                    }
                    "zfill" | "ljust" | "rjust" => {
                        want(1, 1)?;
                        let width = to_i64(&args[0])?.max(0) as usize;
                        self.charge(width)?;
                        let len = s.chars().count();
                        if len >= width {
                            s.to_string()
                        } else {
                            let pad = width - len;
                            match name {
                                "ljust" => format!("{s}{}", " ".repeat(pad)),
                                "rjust" => format!("{}{s}", " ".repeat(pad)),
                                _ => match s.strip_prefix(['-', '+']) {
                                    Some(rest) => format!("{}{}{rest}", &s[..1], "0".repeat(pad)),
                                    None => format!("{}{s}", "0".repeat(pad)),
                                },
                            }
                        }
                    }
                    "removeprefix" | "removesuffix" => {
                        want(1, 1)?;
                        let Some(a) = as_str(args.first())? else {
                            return fail(format!("{name}() argument must be str"));
                        };
                        let r = if name == "removeprefix" {
                            s.strip_prefix(a.as_str())
                        } else {
                            s.strip_suffix(a.as_str())
                        };
                        r.unwrap_or(s).to_string()
                    }
                    _ => return no_attr(&obj, name),
                };
                self.string(out)
            }
            Py::JObj(_) | Py::Dict(_) => match name {
                "get" => {
                    want(1, 2)?;
                    let mut it = args.into_iter();
                    let k = it.next().expect("one argument");
                    let default = it
                        .next()
                        .or_else(|| {
                            kw.into_iter()
                                .find(|(n, _)| *n == "default")
                                .map(|(_, v)| v)
                        })
                        .unwrap_or(Py::None);
                    Ok(match &obj {
                        Py::JObj(o) => match &k {
                            Py::Str(s) => o.get(s.as_ref()).map(from_json),
                            _ => None,
                        },
                        Py::Dict(d) => d.get(&key_of(&k)?).cloned(),
                        _ => unreachable!("matched a dict"),
                    }
                    .unwrap_or(default))
                }
                "keys" | "values" | "items" => {
                    want(0, 0)?;
                    let d = dict_of(&obj).expect("a dict");
                    self.charge(d.len() * 48)?;
                    Ok(Py::List(match name {
                        "keys" => d.keys().map(Key::to_py).collect(),
                        "values" => d.into_values().collect(),
                        _ => d
                            .into_iter()
                            .map(|(k, v)| Py::Tuple(vec![k.to_py(), v]))
                            .collect(),
                    }))
                }
                _ => no_attr(&obj, name),
            },
            Py::JArr(_) | Py::List(_) | Py::Tuple(_) if name == "index" || name == "count" => {
                want(1, 1)?;
                let items = match &obj {
                    Py::Tuple(t) => t.clone(),
                    o => seq(o).expect("a list"),
                };
                if name == "count" {
                    return Ok(Py::Int(
                        items.iter().filter(|x| py_eq(x, &args[0])).count() as i64
                    ));
                }
                match items.iter().position(|x| py_eq(x, &args[0])) {
                    Some(i) => Ok(Py::Int(i as i64)),
                    None => fail(format!("{} is not in list", py_repr(&args[0]))),
                }
            }
            Py::Date(d) => match name {
                "isoformat" => {
                    want(0, 0)?;
                    self.string(d.format("%Y-%m-%d").to_string())
                }
                "strftime" => {
                    want(1, 1)?;
                    let Py::Str(f) = &args[0] else {
                        return fail("strftime() argument must be str");
                    };
                    let s = strftime(f, &d.and_hms_opt(0, 0, 0).expect("midnight exists"), &None)?;
                    self.string(s)
                }
                "weekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(d.weekday().num_days_from_monday())))
                }
                "isoweekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(d.weekday().number_from_monday())))
                }
                _ => no_attr(&obj, name),
            },
            Py::DateTime(dt, off) => match name {
                "isoformat" => {
                    want(0, 1)?;
                    let sep = match args
                        .first()
                        .or_else(|| kw.iter().find(|(k, _)| *k == "sep").map(|(_, v)| v))
                    {
                        Some(Py::Str(s)) if s.chars().count() == 1 => {
                            s.chars().next().expect("one char")
                        }
                        Some(_) => {
                            return fail("isoformat() argument 1 must be a unicode character");
                        }
                        None => 'T',
                    };
                    self.string(iso_datetime(dt, off, sep))
                }
                "strftime" => {
                    want(1, 1)?;
                    let Py::Str(f) = &args[0] else {
                        return fail("strftime() argument must be str");
                    };
                    let s = strftime(f, dt, off)?;
                    self.string(s)
                }
                "timestamp" => {
                    want(0, 0)?;
                    let utc = match off {
                        Some(o) => *dt - *o,
                        None => *dt,
                    };
                    let t = utc.and_utc();
                    Ok(Py::Float(
                        t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6,
                    ))
                }
                "date" => {
                    want(0, 0)?;
                    Ok(Py::Date(dt.date()))
                }
                "weekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(dt.weekday().num_days_from_monday())))
                }
                "isoweekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(dt.weekday().number_from_monday())))
                }
                _ => no_attr(&obj, name),
            },
            _ => no_attr(&obj, name),
        }
    }
}

struct DumpOpts {
    default_str: bool,
    sort_keys: bool,
    ensure_ascii: bool,
    item_sep: String,
    key_sep: String,
}

fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

fn split(s: &str, sep: Option<&str>, max: i64, from_right: bool) -> Result<Vec<String>, EvalError> {
    let max = if max < 0 { usize::MAX } else { max as usize };
    match sep {
        Some("") => fail("empty separator"),
        Some(sep) => Ok(if from_right {
            let mut v: Vec<String> = s
                .rsplitn(max.saturating_add(1), sep)
                .map(str::to_string)
                .collect();
            v.reverse();
            v
        } else {
            s.splitn(max.saturating_add(1), sep)
                .map(str::to_string)
                .collect()
        }),
        None => {
            // Whitespace split: runs of whitespace separate, edges are dropped.
            let words: Vec<&str> = s.split_whitespace().collect();
            if words.len() <= max.saturating_add(1) || max == usize::MAX {
                return Ok(words.into_iter().map(str::to_string).collect());
            }
            if from_right {
                let keep = &words[words.len() - max..];
                let head_end = s.trim_end().len() - keep.join(" ").len();
                let mut out = vec![s[..head_end].trim().to_string()];
                out.extend(keep.iter().map(|w| w.to_string()));
                // Python keeps the original spacing in the head; approximate by trimming.
                Ok(out)
            } else {
                let mut out: Vec<String> = words[..max].iter().map(|w| w.to_string()).collect();
                let mut rest = s.trim_start();
                for _ in 0..max {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    rest = rest[end..].trim_start();
                }
                out.push(rest.to_string());
                Ok(out)
            }
        }
    }
}

fn args_rest<'a>(arg: &mut impl FnMut() -> Py<'a>, argc: usize) -> Vec<Py<'a>> {
    (0..argc).map(|_| arg()).collect()
}

fn dedup(items: Vec<Py<'_>>) -> Result<Py<'_>, EvalError> {
    let mut seen = IndexMap::new();
    for i in items {
        seen.entry(key_of(&i)?).or_insert(i);
    }
    Ok(Py::List(seen.into_values().collect()))
}

fn is_same(a: &Py<'_>, b: &Py<'_>) -> bool {
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Bool(x), Py::Bool(y)) => x == y,
        (Py::Global(x), Py::Global(y)) => x == y,
        _ => false,
    }
}

fn overflow() -> EvalError {
    EvalError::Failed("integer overflow (dsm integers are 64-bit)".into())
}

fn op_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
    }
}

fn arith<'a>(op: BinOp, x: Num, y: Num) -> Result<Py<'a>, EvalError> {
    match (x, y) {
        (Num::D(_), Num::F(_)) => fail(format!(
            "TypeError: unsupported operand type(s) for {}: 'decimal.Decimal' and 'float'",
            op_symbol(op)
        )),
        (Num::F(_), Num::D(_)) => fail(format!(
            "TypeError: unsupported operand type(s) for {}: 'float' and 'decimal.Decimal'",
            op_symbol(op)
        )),
        (x @ Num::D(_), y) | (x, y @ Num::D(_)) => {
            let exact = |n: Num| match n {
                Num::I(i) => Dec::from_i64(i),
                Num::D(d) => d,
                Num::F(_) => unreachable!("floats were turned away above"),
            };
            dec_arith(op, &exact(x), &exact(y))
        }
        (x, y) => float_or_int_arith(op, x, y),
    }
}

/// Arithmetic on `Decimal`s (an integer operand was made one): exact within 28 digits.
fn dec_arith<'a>(op: BinOp, a: &Dec, b: &Dec) -> Result<Py<'a>, EvalError> {
    dec(match op {
        BinOp::Add => a.add(b),
        BinOp::Sub => a.sub(b),
        BinOp::Mul => a.mul(b),
        BinOp::Div => a.div(b),
        BinOp::FloorDiv => a.floor_div(b),
        BinOp::Mod => a.rem(b),
        BinOp::Pow => {
            let power = b.is_integral().then(|| b.trunc()).flatten();
            match power.and_then(|n| a.powi(n)) {
                Some(r) => r,
                None => {
                    return fail(
                        "a Decimal raised to a non-integral or very large power is not supported; \
                         convert with float() first",
                    );
                }
            }
        }
    })
}

fn float_or_int_arith<'a>(op: BinOp, x: Num, y: Num) -> Result<Py<'a>, EvalError> {
    if let (Num::I(a), Num::I(b)) = (&x, &y) {
        let (a, b) = (*a, *b);
        return Ok(match op {
            BinOp::Add => Py::Int(a.checked_add(b).ok_or_else(overflow)?),
            BinOp::Sub => Py::Int(a.checked_sub(b).ok_or_else(overflow)?),
            BinOp::Mul => Py::Int(a.checked_mul(b).ok_or_else(overflow)?),
            BinOp::Div => {
                if b == 0 {
                    return fail("ZeroDivisionError: division by zero");
                }
                Py::Float(a as f64 / b as f64)
            }
            BinOp::FloorDiv | BinOp::Mod => {
                if b == 0 {
                    return fail("ZeroDivisionError: integer division or modulo by zero");
                }
                let q = a.checked_div_euclid(b).ok_or_else(overflow)?;
                let r = a.rem_euclid(b);
                // Python floors towards negative infinity; the remainder takes the divisor's sign.
                let (q, r) = if b < 0 && r != 0 {
                    (q + 1, r + b)
                } else {
                    (q, r)
                };
                if op == BinOp::FloorDiv {
                    Py::Int(q)
                } else {
                    Py::Int(r)
                }
            }
            BinOp::Pow => {
                if b < 0 {
                    Py::Float((a as f64).powf(b as f64))
                } else {
                    let e = u32::try_from(b).map_err(|_| overflow())?;
                    Py::Int(a.checked_pow(e).ok_or_else(overflow)?)
                }
            }
        });
    }
    let (a, b) = (as_f64(x), as_f64(y));
    Ok(Py::Float(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float division by zero");
            }
            a / b
        }
        BinOp::FloorDiv => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float floor division by zero");
            }
            (a / b).floor()
        }
        BinOp::Mod => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float modulo");
            }
            let r = a % b;
            if r != 0.0 && (r < 0.0) != (b < 0.0) {
                r + b
            } else {
                r
            }
        }
        BinOp::Pow => a.powf(b),
    }))
}

fn float_to_int(f: f64) -> Result<i64, EvalError> {
    if !f.is_finite() {
        return fail("cannot convert float infinity or NaN to integer");
    }
    if f.abs() >= 9.2e18 {
        return Err(overflow());
    }
    Ok(f.trunc() as i64)
}

fn to_i64(v: &Py<'_>) -> Result<i64, EvalError> {
    match v {
        Py::Int(i) => Ok(*i),
        Py::Bool(b) => Ok(i64::from(*b)),
        other => fail(format!(
            "'{}' object cannot be interpreted as an integer",
            other.type_name()
        )),
    }
}

fn to_int<'a>(v: Py<'a>) -> Result<Py<'a>, EvalError> {
    Ok(match &v {
        Py::Int(_) => v,
        Py::Bool(b) => Py::Int(i64::from(*b)),
        Py::Float(f) => Py::Int(float_to_int(*f)?),
        Py::Dec(d) => match Dec::parse(d) {
            Some(x) => Py::Int(x.trunc().ok_or_else(overflow)?),
            None => Py::Int(float_to_int(d.parse().unwrap_or(f64::NAN))?),
        },
        Py::Str(s) => {
            let t = s.trim().replace('_', "");
            match t.parse::<i64>() {
                Ok(i) => Py::Int(i),
                Err(_) => {
                    return fail(format!(
                        "invalid literal for int() with base 10: {}",
                        py_repr(&v)
                    ));
                }
            }
        }
        other => {
            return fail(format!(
                "int() argument must be a string or a real number, not '{}'",
                other.type_name()
            ));
        }
    })
}

fn to_float<'a>(v: Py<'a>) -> Result<Py<'a>, EvalError> {
    Ok(match &v {
        Py::Str(s) => {
            let t = s.trim().to_lowercase();
            let f = match t.as_str() {
                "nan" | "+nan" | "-nan" => f64::NAN,
                "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ => match t.replace('_', "").parse::<f64>() {
                    Ok(f) => f,
                    Err(_) => {
                        return fail(format!(
                            "could not convert string to float: {}",
                            py_repr(&v)
                        ));
                    }
                },
            };
            Py::Float(f)
        }
        other => match num(other) {
            Some(n) => Py::Float(as_f64(n)),
            None => {
                return fail(format!(
                    "float() argument must be a string or a real number, not '{}'",
                    other.type_name()
                ));
            }
        },
    })
}

fn no_attr<T>(obj: &Py<'_>, name: &str) -> Result<T, EvalError> {
    fail(format!(
        "'{}' object has no attribute '{name}'",
        obj.type_name()
    ))
}

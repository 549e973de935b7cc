//! Calls of built-in functions and constructors (`len`, `round`, `datetime.datetime(...)` …).

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use md5::Digest as _;
use serde_json::Value;

use super::*;

impl<'c, 'a> Interp<'c, 'a> {
    pub(super) fn call(
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
}

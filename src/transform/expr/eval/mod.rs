//! Values and the interpreter: Python semantics for the operations stream maps use.
//!
//! The interpreter walks the parsed tree here; what each kind of name or operation means lives
//! beside it: the built-in names ([`builtins`]), values and their comparisons ([`value`]),
//! numbers ([`arith`]), built-in functions ([`call`]), methods ([`methods`]), dates and
//! times ([`datetime`]) and the `json` module ([`json`]).

mod arith;
mod builtins;
mod call;
mod datetime;
mod json;
mod methods;
mod value;

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{Datelike, Timelike};
use indexmap::IndexMap;

use super::decimal::Dec;
use super::parse::{BinOp, CmpOp, Const, Generator, Node, Target};
use super::{Context, EvalError, MAX_ALLOC, MAX_STEPS, delta};

use arith::*;
use builtins::*;
use datetime::*;
use json::*;
use value::*;

pub use builtins::Global;
pub(crate) use builtins::{is_known_attribute, is_known_method, sdk_missing};
pub(crate) use datetime::{iso_datetime, parse_iso_datetime};
pub use value::{Py, float_repr};

fn fail<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Failed(msg.into()))
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

    /// Charges reading the values an operation takes: a step for every 256 bytes they hold.
    /// Repeating a cheap-looking operation on large values (a count, a comparison, an `in`)
    /// then runs into the step limit instead of running for minutes: the limit also caps
    /// what one evaluation reads, at about 256 MiB.
    fn read<'v>(&mut self, values: impl IntoIterator<Item = &'v Py<'a>>) -> Result<(), EvalError>
    where
        'a: 'v,
    {
        let bytes = values
            .into_iter()
            .fold(0usize, |n, v| n.saturating_add(size_of(v, false)));
        self.steps = self.steps.saturating_add((bytes / 256) as u64);
        self.step()
    }

    /// Charges what the value of an operation owns as allocated: a name read, an item taken
    /// from a list or the result of a call copy what they return, and what is copied counts
    /// against the allocation limit like what is built (charging a result built by a call
    /// twice is the price of charging every copy once).
    fn owned(&mut self, v: Py<'a>) -> Result<Py<'a>, EvalError> {
        self.charge(size_of(&v, true))?;
        Ok(v)
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
            Node::Local(i) => {
                self.charge(size_of(&self.locals[*i], true))?;
                self.locals[*i].clone()
            }
            Node::Attr(obj, name) => {
                let o = self.eval(obj)?;
                self.attr(o, name)?
            }
            Node::Call(f, args, kwargs) => self.call_node(f, args, kwargs)?,
            Node::Index(obj, idx) => {
                let o = self.eval(obj)?;
                let i = self.eval(idx)?;
                self.read([&o])?;
                let out = self.index(o, i)?;
                self.owned(out)?
            }
            Node::Slice(obj, parts) => self.slice_node(obj, parts)?,
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
                self.read([&l, &r])?;
                let out = self.binop(*op, l, r)?;
                self.owned(out)?
            }
            Node::Cmp(first, rest) => {
                let mut left = self.eval(first)?;
                for (op, n) in rest {
                    let right = self.eval(n)?;
                    self.read([&left, &right])?;
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

    // The arms of `eval` with many locals live in functions of their own, so the frame every
    // level of a deep tree takes stays small (see MAX_HEIGHT).
    #[inline(never)]
    fn call_node(
        &mut self,
        f: &'a Node,
        args: &'a [Node],
        kwargs: &'a [(String, Node)],
    ) -> Result<Py<'a>, EvalError> {
        let mut a = Vec::with_capacity(args.len());
        let target = if let Node::Attr(obj, name) = f {
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
        let receiver = target.as_ref().ok().map(|(obj, _)| obj);
        self.read(receiver.into_iter().chain(&a))?;
        let out = match target {
            Ok((obj, name)) => self.method(obj, name, a, kw)?,
            Err(Py::Global(g)) => self.call(g, a, kw)?,
            Err(other) => {
                return fail(format!("'{}' object is not callable", other.type_name()));
            }
        };
        self.owned(out)
    }

    #[inline(never)]
    fn slice_node(
        &mut self,
        obj: &'a Node,
        parts: &'a [Option<Box<Node>>; 3],
    ) -> Result<Py<'a>, EvalError> {
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
        self.read([&o])?;
        let out = match o {
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
        };
        self.owned(out)
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
}

fn no_attr<T>(obj: &Py<'_>, name: &str) -> Result<T, EvalError> {
    fail(format!(
        "'{}' object has no attribute '{name}'",
        obj.type_name()
    ))
}
